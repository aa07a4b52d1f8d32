"""omnimatte_core — RGBA layer fitting, ordering, compositing and synthetic scenes (pure PyTorch, no ComfyUI).

Main entry points:
- ``fit_layers(solos, background, masks, ...)`` — one RGBA layer per object, all objects in one optimisation;
- ``fit_layers_full_res(solos_hr, background_hr, masks_hr, base, ...)`` — the bootstrapped full-resolution stage;
- ``synthetic.make_scene(...)`` — synthetic videos with exact ground truth; ``metrics`` — scores against it.
"""
from .fit import FittedLayers, check_fit_inputs, fit_layers, fit_layers_full_res, minimal_alpha
from .presets import PRESETS, FitConfig

__all__ = ["FittedLayers", "FitConfig", "PRESETS", "check_fit_inputs", "fit_layers", "fit_layers_full_res",
           "minimal_alpha"]
