"""Effect-aware weight-free removal: iterate clean plate ↔ layers so that one object's shadow or reflection does not
end up inside another object's layer (issue 8, item 3).

The plain clean-plate path (:mod:`.clean_plate`) replaces only the *dilated masks* of the other objects by the plate,
so solo ``i`` keeps every other object's effect that reaches beyond its dilated mask, and layer ``i`` absorbs it.
Here the layers are fitted once on those solos, and then:

(a) the plate is rebuilt with the frames that the fit gives to some layer (alpha above ``alpha_threshold``) left out
    of each pixel's temporal median as well, so shadows that linger on a spot no longer darken the plate (where every
    frame is claimed, the least-claimed ones are used; where the claims leave fewer than half of the frames, the
    first plate stays — see :func:`_rebuild_plate`). Measured against the plain plate: +0.4 dB on the demo scene,
    +2.2 dB on its 8-frame version, −0.7 to +1.5 dB on three 64×112 scenes (BENCHMARKS.md); the fitted alpha is
    measured against the first plate, so it cannot always tell an effect from a plate error;
(b) each solo ``i`` is rebuilt by *un-compositing* the other fitted layers ``j``: where layer ``j`` has alpha ``a``
    and colour ``c`` the pixel without it is ``(I − a·c) / (1 − a)`` (clamped), blending to the plate where ``a`` is
    near 1. Object ``i``'s own mask is never touched.

Step (b) alone does not work, because the first fit cannot tell whose effect it explains: solo ``j`` also keeps
object ``i``'s far shadow, so layer ``j`` holds a copy of it, and removing all of layer ``j`` from solo ``i``
removes object ``i``'s own effect too (measured on the demo scene: the reflection's recall falls from 0.94 to 0.18
and the shadow's from 0.77 to 0.55, see BENCHMARKS.md "Weight-free path: cross-talk"). So only the part of layer
``j`` that *moves with object j* is removed: an effect is carried by its object (the premise of omnimatte), so in a
frame of reference that follows object ``j`` (the mask centroid's translation) object ``j``'s effect stands still,
while a copy of object ``i``'s effect moves with ``i``. :func:`motion_ownership` measures, per pixel, how far the
layer's alpha is from its temporal median in each object's frame; the pixel belongs to ``j`` as much as that
residual is smaller for ``j`` than for ``i``. Objects that move together (or not at all) give no evidence, and such
pixels are left as the plain path leaves them.

Limits: only translation is followed (a reflection of an object that bobs vertically moves the other way; an object
turning or approaching the camera changes its effect's shape); an effect that stays where its object was (a dust
trail, a footprint) does not move with it and is left in the other solos; the cost is one more fit per round.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .checks import check_masks, check_video, check_width
from .clean_plate import SOLO_DILATION, CleanPlate, _masked_temporal_median, estimate_clean_plate, solo_videos
from .masks import MASK_DILATION, dilate_masks
from .removal import Removal

__all__ = ["PLATE_ROUNDS", "ROUND_FIT_PRESET", "EffectAwareRemoval", "effect_aware_removal", "motion_ownership",
           "uncomposite", "object_shifts"]

ALPHA_THRESHOLD = 0.05
"""A fitted alpha this much above a pixel's least-claimed frame takes the frame out of the plate's median; the level of
false opacity."""
OWNERSHIP_FLOOR = 0.05
"""Residual differences below this (alpha units) are no evidence: a layer's faint veil is not assigned to anyone."""
_SMOOTH = 5  # box width in pixels over which motion residuals are averaged


PLATE_ROUNDS = 1
"""Plate ↔ layers rounds by default (the node's and the main command's): one round takes most of the other objects'
effects out of each solo; 0 is the plain clean plate."""
ROUND_FIT_PRESET = "preview"
"""The fit preset the Clean Plate node gives the plate ↔ layers rounds, and the main command's default preset: these
layers only locate the other objects' effects, so the quick preset serves."""


@dataclass
class EffectAwareRemoval(Removal):
    """What :func:`effect_aware_removal` returns: a :class:`~.removal.Removal` (``background [T,3,H,W]``, the final
    plate for every frame; ``solos [N,T,3,H,W]``, the final solo videos) with what built it:

    - ``plate``: the final :class:`~.clean_plate.CleanPlate`;
    - ``fits``: the internal :class:`~.fit.FittedLayers`, one per round (their ``.alpha`` located the effects);
      the layers for the user come from fitting ``solos`` against ``plate.background`` once more;
    - ``rounds``: how many plate ↔ layers rounds ran (0: the plain clean-plate path).
    """

    plate: CleanPlate
    fits: list
    rounds: int


# --------------------------------------------------------------------------------------------------------------------
# Who owns an effect: the object it moves with


def object_shifts(masks: torch.Tensor) -> torch.Tensor | None:
    """Per object and frame the translation ``[N,T,2]`` (dx, dy in pixels) of its mask's centroid from its mean
    position. Frames where an object's mask is empty take the nearest frame's value. ``None`` if some object is
    empty in every frame (it has no motion to follow)."""
    n, t, _, h, w = masks.shape
    m = masks[:, :, 0].float()
    area = m.sum(dim=(-2, -1))  # [N,T]
    if bool((area == 0).all(dim=1).any()):
        return None
    ys = torch.arange(h, dtype=torch.float32, device=m.device)
    xs = torch.arange(w, dtype=torch.float32, device=m.device)
    cx = (m.sum(dim=-2) * xs).sum(dim=-1) / area.clamp_min(1)
    cy = (m.sum(dim=-1) * ys).sum(dim=-1) / area.clamp_min(1)
    centre = torch.stack([cx, cy], dim=-1)  # [N,T,2]
    frames = torch.arange(t, device=m.device)
    for k in range(n):
        seen = (area[k] > 0).nonzero()[:, 0]
        if len(seen) < t:
            nearest = seen[(frames[:, None] - seen[None]).abs().argmin(dim=1)]
            centre[k] = centre[k, nearest]
    return centre - centre.mean(dim=1, keepdim=True)


def _translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Move the content of each frame ``x [T,C,H,W]`` by ``shift [T,2]`` (dx, dy pixels), bilinear, NaN outside."""
    t, c, h, w = x.shape
    theta = torch.zeros(t, 2, 3, dtype=torch.float32, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * shift[:, 0] / w  # sampling at (x − dx) moves the content by +dx
    theta[:, 1, 2] = -2 * shift[:, 1] / h
    grid = F.affine_grid(theta, [t, c, h, w], align_corners=False)
    moved = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(torch.ones(t, 1, h, w, device=x.device), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False) > 0.999
    return torch.where(inside, moved, torch.tensor(float("nan"), device=x.device))


def _motion_residual(alpha: torch.Tensor, shift: torch.Tensor, smooth: int) -> torch.Tensor:
    """``|alpha − template|`` ``[T,1,H,W]``: the template is the temporal median of ``alpha [T,1,H,W]`` in the frame of
    reference that moves by ``shift [T,2]``, moved back to each frame. Small where the content moves with ``shift``."""
    steady = _translate(alpha, -shift)
    template = steady.nanmedian(dim=0, keepdim=True).values
    template = torch.nan_to_num(template, nan=0.0).expand_as(alpha).contiguous()
    back = torch.nan_to_num(_translate(template, shift), nan=0.0)
    residual = (alpha.float() - back).abs()
    if smooth > 1:
        residual = F.avg_pool2d(residual, smooth, stride=1, padding=smooth // 2, count_include_pad=False)
    return residual


def motion_ownership(alpha: torch.Tensor, shifts: torch.Tensor, owner: int, other: int, *,
                     floor: float = OWNERSHIP_FLOOR, smooth: int = _SMOOTH) -> torch.Tensor:
    """Share (0..1) ``[T,1,H,W]`` of layer ``owner``'s alpha ``alpha [T,1,H,W]`` that moves with object ``owner``
    rather than with object ``other`` (``shifts [N,T,2]`` from :func:`object_shifts`).

    With ``r_k`` the layer's residual from its steady template in object ``k``'s frame (averaged over ``smooth`` px)
    and the contrast ``c = (r_other − r_owner) / max(r_other, r_owner, floor)``, the share is ``2c`` clamped to 0..1:
    all of it where the residual in the owner's frame is at most half that in the other's, nothing where it follows
    the other object or where neither gives evidence (both move alike, or the alpha is fainter than ``floor``).
    Measured on a first fit of the demo scene (alpha-weighted, outside the dilated masks): 0.97/0.96 of each layer's
    own effect (0.74/0.78 with ``c`` alone), 0.002/0.015 of its copy of the other object's effect."""
    return _share(_motion_residual(alpha, shifts[owner], smooth), _motion_residual(alpha, shifts[other], smooth),
                  floor)


def _share(r_owner: torch.Tensor, r_other: torch.Tensor, floor: float = OWNERSHIP_FLOOR) -> torch.Tensor:
    contrast = (r_other - r_owner) / torch.maximum(torch.maximum(r_other, r_owner),
                                                   torch.tensor(floor, device=r_owner.device))
    return (2 * contrast).clamp(0, 1)


# --------------------------------------------------------------------------------------------------------------------
# Removing a fitted layer from a video


def uncomposite(video: torch.Tensor, alpha: torch.Tensor, rgb: torch.Tensor, plate: torch.Tensor, *,
                opaque: float = 0.9) -> torch.Tensor:
    """The video as it would be without one layer: ``(video − alpha·rgb) / (1 − alpha)``, clamped to 0..1, blended
    to ``plate`` where ``alpha`` nears 1 (from ``opaque − 0.1`` to ``opaque``: nothing behind the layer was seen).

    ``video [T,3,H,W]``, ``alpha [T,1,H,W]``, ``rgb [T,3,H,W]`` straight colour, ``plate [3,H,W]`` or ``[T,3,H,W]``."""
    a = alpha.clamp(0, 1)
    behind = ((video - a * rgb) / (1 - a).clamp_min(1e-3)).clamp(0, 1)
    to_plate = ((a - (opaque - 0.1)) / 0.1).clamp(0, 1)
    return torch.lerp(behind, plate.expand_as(video).to(behind), to_plate)


# --------------------------------------------------------------------------------------------------------------------
# The iteration


def _rebuild_plate(video, covered, alpha, previous: CleanPlate, threshold: float, width: int) -> CleanPlate:
    """Per pixel, the temporal median of the frames outside the dilated masks whose *claim* (the largest fitted alpha
    of any layer, spread over ``width`` px) is within ``threshold`` of the pixel's least-claimed such frame — the
    frames no layer claims, or where every frame is claimed the least covered ones — provided that these are at least
    half of the frames that showed the pixel. Elsewhere the previous plate stays: when the fit claims most frames of a
    pixel it may as well be claiming the clean frames against a plate that a lingering effect spoiled (the layers
    are fitted against that plate), and the two cannot be told apart."""
    claim = alpha.amax(dim=0).float()  # [T,1,H,W]
    if width > 1:
        width |= 1
        claim = F.max_pool2d(claim, width, stride=1, padding=width // 2)
    claim = claim.masked_fill(covered, 2.0)  # never chosen
    chosen = ~covered & (claim <= claim.amin(dim=0, keepdim=True) + threshold)
    count, seen = chosen.sum(dim=0), (~covered).sum(dim=0)
    median = _masked_temporal_median(video, chosen)
    use = (count > 0) & (2 * count >= seen)
    plate = torch.where(use, median, previous.plate.to(median)).clamp(0, 1).to(video.dtype)
    t = video.shape[0]
    return CleanPlate(plate=plate, background=plate.unsqueeze(0).expand(t, -1, -1, -1),
                      never_uncovered=previous.never_uncovered,
                      visible_frames=torch.where(use, count, seen).long(),
                      filled_fraction=previous.filled_fraction, camera_motion_px=previous.camera_motion_px)


def _fit(solos, background, masks, fit_size, fit_kwargs):
    from .fit import fit_layers
    from .upsample import resize_video

    size = tuple(solos.shape[-2:])
    if fit_size is None or tuple(fit_size) == size:
        fitted = fit_layers(solos, background, masks.float(), **fit_kwargs)
        return fitted, fitted.rgb, fitted.alpha
    fitted = fit_layers(resize_video(solos, fit_size, "area"), resize_video(background, fit_size, "area"),
                        (resize_video(masks.float(), fit_size, "area") > 0.5).float(), **fit_kwargs)
    return fitted, resize_video(fitted.rgb, size, "bilinear"), resize_video(fitted.alpha, size, "bilinear")


def effect_aware_removal(video: torch.Tensor, masks: torch.Tensor, *, rounds: int = PLATE_ROUNDS,
                         plate_dilate: int = MASK_DILATION, solo_dilate: int = SOLO_DILATION,
                         alpha_threshold: float = ALPHA_THRESHOLD, claim_dilate: int = 3,
                         fit_size: tuple[int, int] | None = None, fit_kwargs: dict | None = None,
                         allow_camera_motion: bool = False, max_camera_motion: float = 1.0,
                         ownership: bool = True, rebuild_plate: bool = True) -> EffectAwareRemoval:
    """Clean plate and solo videos with the other objects' effects removed (see the module doc).

    Args:
        video: ``[T,3,H,W]`` frames, 0..1 (a locked-off shot).
        masks: ``[N,T,1,H,W]`` or ``[N,T,H,W]`` object masks.
        rounds: plate ↔ layers rounds; each costs one fit. 0 gives the plain clean-plate path (no fit).
        plate_dilate, solo_dilate: mask dilations of :func:`~.clean_plate.estimate_clean_plate` and
            :func:`~.clean_plate.solo_videos`.
        alpha_threshold: a frame is left out of a pixel's median in the rebuilt plate when some fitted layer's alpha
            there exceeds that of the pixel's least-claimed frame (usually 0) by more than this.
        claim_dilate: width in pixels over which each fitted alpha is spread first (soft edges below the threshold).
        fit_size: ``(H, W)`` at which the internal fits run (e.g. the demo's base size); layers are resized back
            to the video's size for the un-compositing. Default: the video's size.
        fit_kwargs: keyword arguments of :func:`~.fit.fit_layers` (``preset``, ``steps``, ``seed``, ``device``,
            ``progress``, …).
        allow_camera_motion, max_camera_motion: as for :func:`~.clean_plate.estimate_clean_plate`.
        ownership: remove from solo ``i`` only the part of layer ``j`` that moves with object ``j``
            (:func:`motion_ownership`); False removes all of layer ``j`` (which also takes object ``i``'s own effect
            copied into layer ``j`` — kept for measurements).
        rebuild_plate: step (a); False keeps the first plate (only the solos change).

    Returns an :class:`EffectAwareRemoval`. Raises like :func:`~.clean_plate.estimate_clean_plate`.
    """
    video = check_video(video)
    masks = check_masks(masks, video)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be an integer >= 0, got {rounds!r}")
    plate_dilate = check_width(plate_dilate, "plate_dilate")
    claim_dilate = check_width(claim_dilate, "claim_dilate")
    if not 0 <= alpha_threshold < 1:
        raise ValueError(f"alpha_threshold must be in [0, 1), got {alpha_threshold!r}")
    fit_kwargs = dict(fit_kwargs or {})

    plate = estimate_clean_plate(video, masks, dilate=plate_dilate, allow_camera_motion=allow_camera_motion,
                                 max_camera_motion=max_camera_motion)
    solos = solo_videos(video, masks, plate, dilate=solo_dilate)
    n = masks.shape[0]
    fits = []
    if n < 2:
        rounds = 0  # nothing to take out of a single object's solo; the plate alone would not justify a fit
    covered = dilate_masks(masks.any(dim=0), plate_dilate)
    shifts = object_shifts(masks) if ownership else None
    for _ in range(rounds):
        fitted, rgb, alpha = _fit(solos, plate.background, masks, fit_size, fit_kwargs)
        fits.append(fitted)
        rgb, alpha = rgb.to(video), alpha.to(video)
        # (a) the plate from the frames that no layer claims (or, where every frame is claimed, the least claimed)
        if rebuild_plate:
            plate = _rebuild_plate(video, covered, alpha, plate, alpha_threshold, claim_dilate)
        # (b) each solo without the other objects' layers (the part that moves with them), where the solo still
        #     shows the input (inside the other objects' dilated masks it already shows the plate)
        solos = solo_videos(video, masks, plate, dilate=solo_dilate)
        grown = dilate_masks(masks, solo_dilate)
        for j in range(n):
            own = _motion_residual(alpha[j], shifts[j], _SMOOTH) if shifts is not None else None
            for i in range(n):
                if i == j:
                    continue
                if not ownership:
                    share = torch.ones_like(alpha[j])
                elif shifts is None:
                    continue  # an object with no mask at all: no motion to tell its effects by
                else:
                    share = _share(own, _motion_residual(alpha[j], shifts[i], _SMOOTH))
                others = torch.cat([grown[:i], grown[i + 1:]]).any(dim=0)
                without = uncomposite(solos[i], alpha[j] * share, rgb[j], plate.plate)
                solos[i] = torch.where(masks[i] | others, solos[i], without)
    return EffectAwareRemoval(background=plate.background, solos=solos, plate=plate, fits=fits, rounds=rounds)
