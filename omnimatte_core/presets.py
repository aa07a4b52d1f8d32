"""Settings of the omnimatte fit, in one place: the dataclass and the named presets.

The nodes, the command line and the benchmarks all read their defaults from here.

Two stages share one settings type (`FitConfig`):
- *base*: the paper's first stage (supplement Sec. D) at the removal model's resolution;
- *full resolution*: the bootstrapped stage, supervised by the upsampled base alpha.

Presets:
- ``paper``   — the supplement's settings as written: 20 000 steps per stage, 20-frame batches, base loss
  L2 + λ_sparsity 1 (β0 1, β1 10) + λ_mask 20 decaying; full-res L1 + λ_sparsity 10 + λ_mask 10 (off after
  2 000 steps) + λ_alpha 20.
- ``default`` — 200 steps per stage: L1 reconstruction, λ_sparsity 0.03 (β0 1, β1 10, weighted by how much of the
  frame the object covers, and lightened to a fifth where the solo's change is coloured), alpha kept at
  1 inside the mask, no outside-mask term, a coarse reconstruction term, a higher learning rate; the background
  aligned to each solo, the measured noise set aside (start and dead zone), a locally constant effect colour and the
  least-opacity start, raised where the background's texture reads a higher alpha (see ``fit.py``). Measured in
  BENCHMARKS.md, on exact and on degraded inputs.
- ``preview`` — a quick look: half the default's steps.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace


@dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters of one fitting stage. Step counts are optimiser steps; fractions are of ``steps``."""

    steps: int = 200
    batch_frames: int = 4
    """Frames per optimisation step (the paper's batch size). Clipped to the clip length."""
    lr: float = 3e-3
    lr_milestones: tuple[float, ...] = (0.6, 0.85)
    """Fractions of ``steps`` at which the learning rate is multiplied by ``lr_gamma``."""
    lr_gamma: float = 0.3
    width: int = 8
    """Channels of the first U-Net level (doubled at each of the two lower levels)."""

    difference_gain: float = 8.0
    """Gain on the ``solo − background`` input feature."""
    init_from_minimal_alpha: bool = True
    """Start alpha at the least opacity that explains the solo video (see ``fit.minimal_alpha``) instead of 0.5."""

    align_inputs: bool = True
    """Map the background onto each solo video first (global sub-pixel shift, per-channel gain and offset per frame,
    see ``input_alignment``) and measure the noise left between them. Off: the videos are used as given."""
    align_shift: bool = True
    """Whether the alignment estimates a shift (off: colour only)."""
    noise_threshold: float = 3.0
    """Differences below this many noise standard deviations start at alpha 0 (0: start at the least opacity of
    the raw difference)."""
    noise_tolerance: float = 2.0
    """Reconstruction errors up to this many noise standard deviations (per object and channel, measured by the
    alignment) cost nothing: noise between two generations is not explained by opacity."""
    noise_floor: float = 2.0 / 255
    """Least noise standard deviation (per channel, 0..1 scale) assumed between a solo and its background, whatever
    the alignment measured. Outside the objects two videos that share their pixels (a clean-plate solo, one encode of
    the same frames) can agree exactly, while a lossy codec still leaves an error of a level or two where they differ:
    in the effects. JPEG 85 shifted a black shadow's colour by +1.1/−1.3 levels in red/blue; with the measured noise
    (at the old floor of 1/1024) the fit explained that with a brown layer at +0.1 alpha (effect alpha error 0.103,
    0.086 with this floor). Exact inputs lose little: shadow error 0.014 → 0.017. See BENCHMARKS.md."""
    colour_smoothing: float = 0.1
    """Outside the object mask, the layer's colour is locally constant over a Gaussian of this fraction of the
    shorter side (at least 1 px), so alpha is measured by the background's texture showing through; 0 ties the colour
    to alpha everywhere (the least-opacity layer). See ``fit._LayerModel``."""

    texture_pool: float = 0.04
    """Neighbourhood (Gaussian width, fraction of the shorter side; 0: off) over which the background's texture
    showing through the solo is read as opacity (``texture_alpha``). Where that reading is clearly above the least
    opacity, the fit starts from it: a tinted translucent layer (dust near the ground's colour) otherwise stays near
    its least opacity under noise. See ``fit._lift_by_texture``."""
    motion_reading: bool = True
    """Also read the opacity of layers that move over the background from the background's change under them
    (``motion_alpha``, same neighbourhood), and after the fit set alpha to it where it is clearly above the least
    opacity. It holds for a layer as textured as a reflection, whose colour the fit's locally constant effect colour
    cannot follow, so that its alpha comes out well below the truth (measured: reflection alpha error 0.13–0.16 →
    0.06–0.10 on degraded inputs, shadow and dust unchanged; about 4 s per layer at 85×384×672 on an H200). Off with
    ``texture_pool`` 0 too. See ``fit._apply_motion_anchor``."""

    coarse_recon: float = 0.02
    """Gaussian scale (fraction of the shorter side; 0: off) of a second reconstruction term on the blurred
    residual, with its own dead zone at the blurred noise level. A per-pixel dead zone of a few noise deviations also
    hides a faint effect whose residual is coherent over many pixels; blurred, the noise shrinks and that residual
    does not, so a faint dust cloud or reflection still pays for a wrong alpha."""

    recon: str = "l1"
    """Reconstruction metric: ``l2`` (the paper's base stage) or ``l1`` (the paper's full-resolution stage; our default
    for both, because its constant gradient keeps faint effects — a shadow on a dark floor — against sparsity)."""
    sparsity_weight: float = 0.03
    """λ_sparsity. 0.03 (with ``sparsity_by_coverage``): at 0.1 it outweighed what the background's texture says
    about a translucent effect's alpha and held coloured effects (reflection, dust) at their least opacity; at 0.01
    noise on degraded inputs starts to buy opacity (false opacity > 2 %). See BENCHMARKS.md."""
    beta_l0: float = 1.0
    """β0: weight of the sigmoid-based L0-like term."""
    beta_l1: float = 10.0
    """β1: weight of the L1 term."""
    l0_sharpness: float = 5.0
    """k in 2·(sigmoid(k·α) − 0.5), the L0-like sparsity term."""
    sparsity_on_differences: float = 0.2
    """Sparsity's weight, as a share of its full weight, where the solo differs from the background by a *coloured*
    change, one that needs a different opacity in each channel (``fit._sparsity_map``); 1: uniform sparsity. Uniform
    sparsity fitted a reflection and a dust trail near their least opacity (effect alpha error 0.15 and 0.11 on exact
    composites). Lightening it wherever the solo differs at all (a pure darkening too) let a black shadow's alpha
    drift up to 0.19 too high under noise and JPEG, where the dead zone hides the texture that measures it; for a
    darkening the least opacity already is the alpha, so there sparsity stays whole."""
    weigh_channels: bool = True
    """Weigh each channel's least opacity by its headroom (the background's value for a darkening) when judging
    whether a change is coloured and when starting a pure darkening (``fit._coloured``, ``fit._start_opacity``): the
    same colour noise is a larger opacity in a dark channel. False: equal weights and the largest channel's opacity
    as the start. A black shadow under JPEG: effect alpha error 0.086 → 0.070; under the combined degradations
    0.098 → 0.064 (CPU, seed 1, 16×96×160; see BENCHMARKS.md)."""
    sparsity_by_coverage: bool = True
    """Multiply the sparsity weight by the mean object-mask coverage, so its pull is the same for small and large
    objects (the public reimplementation does this too)."""

    mask_weight: float = 0.0
    """λ_mask at step 0 (the paper: 20 at base, 10 at full resolution). Off by default: the minimal-alpha start
    already places the objects, and this term's pull of alpha to 0 outside the mask is what holds shadows out of
    the layer until it has decayed (the reference's shadows appear only after its step 1000)."""
    mask_decay_end: float = 0.1
    """Fraction of ``steps`` over which λ_mask decays linearly to zero (the paper: "gradually reduced")."""
    mask_off_step: int | None = None
    """If set, λ_mask stays constant and switches off after this many steps (the full-resolution stage: 2 000)."""

    mask_inside_weight: float = 1.0
    """Weight of a term that never decays and keeps alpha at 1 inside the object mask: the mask says the object is
    there and opaque, and without it sparsity slowly turns object interiors translucent wherever the object's colour
    is close to the background's."""

    alpha_weight: float = 0.0
    """λ_alpha: supervision by the upsampled base alpha (full-resolution stage only)."""
    edge_band: int = 2
    """Half-width in pixels (at full resolution, plus the upsampling factor) of the band around alpha edges that
    the alpha supervision leaves out, so upsampling does not teach aliased boundaries."""

    preview_every: int = 50
    """Steps between preview images handed to the progress callback."""

    def with_overrides(self, **overrides) -> "FitConfig":
        """A copy with some fields replaced; unknown names raise ``TypeError`` naming them."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown fit setting(s) {unknown}; known settings: {sorted(known)}")
        return replace(self, **overrides)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Preset:
    base: FitConfig
    full_res: FitConfig
    description: str = field(default="", compare=False)


# The full-resolution stage's alpha is held by the upsampled base alpha, so its colour needs no wide neighbourhood;
# a tenth of a 1080p frame's side would be a 650-tap blur every step.
FULL_RES_COLOUR_SMOOTHING = 0.015

PRESETS: dict[str, Preset] = {
    "paper": Preset(
        base=FitConfig(
            steps=20_000, batch_frames=20, lr=1e-3, lr_milestones=(0.5, 0.75), lr_gamma=0.3, width=16,
            recon="l2", sparsity_weight=1.0, beta_l0=1.0, beta_l1=10.0,
            mask_weight=20.0, mask_decay_end=0.5, preview_every=500,
        ),
        full_res=FitConfig(
            steps=20_000, batch_frames=20, lr=1e-3, lr_milestones=(0.5, 0.75), lr_gamma=0.3, width=16,
            recon="l1", sparsity_weight=10.0, beta_l0=1.0, beta_l1=10.0,
            mask_weight=10.0, mask_off_step=2_000, alpha_weight=20.0, preview_every=500,
            colour_smoothing=FULL_RES_COLOUR_SMOOTHING,
        ),
        description="The supplement's settings (Sec. D): 20 000 steps per stage, 20-frame batches.",
    ),
    "default": Preset(
        base=FitConfig(),
        full_res=FitConfig(steps=200, batch_frames=4, lr=2e-3, alpha_weight=20.0,
                           colour_smoothing=FULL_RES_COLOUR_SMOOTHING),
        description="The paper's objective on a schedule that converges in a few hundred steps.",
    ),
    "preview": Preset(
        base=FitConfig(steps=100, lr=4e-3),
        full_res=FitConfig(steps=80, batch_frames=2, lr=3e-3, alpha_weight=20.0,
                           colour_smoothing=FULL_RES_COLOUR_SMOOTHING),
        description="A quick look: half the default's steps.",
    ),
}


def resolve_config(preset: str | FitConfig, stage: str, steps: int | None = None, **overrides) -> FitConfig:
    """The settings of one stage (``"base"`` or ``"full_res"``) of a named preset, with overrides applied."""
    if isinstance(preset, FitConfig):
        config = preset
    else:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        config = getattr(PRESETS[preset], stage)
    if steps is not None:
        if int(steps) < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        overrides["steps"] = int(steps)
    return config.with_overrides(**overrides) if overrides else config
