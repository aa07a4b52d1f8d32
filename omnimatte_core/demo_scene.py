"""The built-in demo: the synthetic scene and the fit preset that the Demo Scene node, the main command
(``python -m casper_core.decompose`` with no ``--video``) and the cross-talk benchmark start from."""
from __future__ import annotations

from .effect_aware import ROUND_FIT_PRESET

__all__ = ["DEMO_PRESET", "DEMO_SCENE"]

DEMO_SCENE = dict(num_objects=2, frames=24, height=128, width=224, effects=("shadow", "reflection"))
"""Arguments of ``synthetic.make_scene`` (besides the seed): two objects, one casting a shadow and one reflected in
water, 24 frames of 128×224."""
DEMO_PRESET = ROUND_FIT_PRESET
"""The quick preset ("preview"): its steps keep the whole synthetic demo around 2 minutes on 2 CPU cores, two fits
included (one in the clean-plate stage's plate ↔ layers round, ``--plate-rounds 0`` skips it); the demo prints its
time per stage."""
