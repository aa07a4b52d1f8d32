"""A translucent effect's opacity read from the background moving under it.

A layer that moves over the background (a reflection that follows its object across the water) covers different
background in different frames. Follow one point of the layer from frame ``t`` to frame ``u`` and the layer's own
colour cancels: ``solo_u(x + s) − solo_t(x) = (1 − α)·(bg_u(x + s) − bg_t(x))``. Regressing the solo's change on the
background's change over a neighbourhood gives ``1 − α`` whatever the layer's colour, even when that colour is as
textured as the mirrored object in a reflection: there the single-frame reading (``texture_alpha``) fails, because the
layer's texture is mistaken for the background's, and the least opacity of a mid-tone reflection over dark water is
less than half its alpha.

The layer's motion ``s`` between two frames is one translation per object and frame pair: the peak of the cross
correlation of the parts of its least-opacity maps that move (a low temporal quantile removes what stays put:
colour drift, compression, misalignment). The estimate is kept only where:

- the pixel is part of an effect in frame ``t`` (least opacity above ``SUPPORT``), outside the object mask;
- the background changed well above its noise under the moving layer (``TEXTURE_SNR``);
- the attenuated background change explains most of the solo's change (R², ``R2_RAMP``): a layer that deforms,
  spins or does not move rigidly with the estimated translation leaves a change of its own.
"""
from __future__ import annotations

import math

import torch

from .input_alignment import gaussian_blur, shift_frames
from .masks import dilate_masks

FRAME_GAPS = (1, 2, 3)
"""Frame pairs ``(t, t ± gap)`` whose statistics are pooled: more pairs, more independent background under the layer."""
SUPPORT = 0.02
"""Least opacity above which a pixel counts as part of an effect (the regression uses these pixels only)."""
TEXTURE_SNR = 5.0
"""The background's change under the layer must exceed this multiple of its noise energy for an estimate."""
R2_RAMP = (0.6, 0.8)
"""Share of the solo's change the attenuated background change must explain: none kept below, all above."""
CHANGE_BLUR = 1.0
"""Gaussian blur (pixels) of the changes before they are compared."""
MIN_SHIFT = 0.5
"""Pairs in which the layer moved less than this (pixels) carry no information and are skipped."""
MASK_MARGIN = 3
"""Pixels around the object mask left out (the object's own colour is not the layer's)."""
_MATCH_BLUR = 1.5
_REFINE_STEPS = 3
_STATIC_QUANTILE = 0.1


def layer_shift(before: torch.Tensor, after: torch.Tensor) -> tuple[float, float]:
    """The translation ``(dx, dy)`` in pixels with ``after(x + shift) ≈ before(x)`` for ``[H, W]`` maps (one pair of
    ``layer_shifts``)."""
    dx, dy = layer_shifts(before[None], after[None])[0].tolist()
    return dx, dy


def layer_shifts(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per pair of ``[P, H, W]`` maps, the translation ``[P, 2]`` (dx, dy) with ``after(x + shift) ≈ before(x)``: the
    peak of their cross-correlation (zero-padded, so no wrap-around), refined to sub-pixel by Gauss-Newton on their
    difference (a parabola through the peak is biased towards whole pixels by up to half a pixel). All pairs at once:
    one pair at a time, the clip's few hundred pairs were most of the reading's cost on a GPU."""
    p, h, w = before.shape
    a = gaussian_blur(before[:, None].float(), _MATCH_BLUR)
    b = gaussian_blur(after[:, None].float(), _MATCH_BLUR)
    size = (2 * h, 2 * w)
    corr = torch.fft.irfft2(torch.fft.rfft2(b[:, 0], s=size) * torch.fft.rfft2(a[:, 0], s=size).conj(), s=size)
    peak = corr.flatten(1).argmax(dim=1)
    iy, ix = peak // (2 * w), peak % (2 * w)
    shift = torch.stack([torch.where(ix < w, ix, ix - 2 * w), torch.where(iy < h, iy, iy - 2 * h)], dim=1).float()
    for _ in range(_REFINE_STEPS):
        moved = shift_frames(b, shift)[:, 0]
        gy, gx = torch.gradient(moved, dim=(1, 2))
        residual = moved - a[:, 0]
        gxx, gxy, gyy = (gx * gx).sum((1, 2)), (gx * gy).sum((1, 2)), (gy * gy).sum((1, 2))
        rx, ry = (gx * residual).sum((1, 2)), (gy * residual).sum((1, 2))
        det = gxx * gyy - gxy * gxy
        solvable = det > 1e-12  # a flat pair keeps its whole-pixel peak
        safe = torch.where(solvable, det, torch.ones_like(det))
        step = torch.stack([-(gyy * rx - gxy * ry) / safe, -(gxx * ry - gxy * rx) / safe], dim=1)
        shift = shift + (step.clamp(-1.0, 1.0) * solvable[:, None])
    return shift


def motion_alpha(solo: torch.Tensor, background: torch.Tensor, mask: torch.Tensor, least_alpha: torch.Tensor,
                 noise_sigma: torch.Tensor, pool: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Opacity of a layer that moves rigidly over the background, from the background's change under it.

    Args:
        solo, background: ``[T, N, 3, H, W]`` per object, the background aligned to that solo.
        mask: ``[T, N, 1, H, W]`` binary object masks.
        least_alpha: ``[T, N, 1, H, W]`` the least opacity of each pixel (noise set aside): where the effects are.
        noise_sigma: ``[N, 3]`` standard deviation of ``solo − background`` where nothing differs.
        pool: Gaussian width (pixels) of the neighbourhood each regression is taken over.

    Returns ``(alpha, trust)``, each ``[T, N, 1, H, W]``: the estimate, and how far it can be trusted (0..1, see the
    module's docstring; 0 where there is no estimate). A neighbourhood's readings are best averaged weighted by
    their trust: ``alpha · trust`` alone is biased low wherever the trust is partial.
    """
    t, n, _, h, w = solo.shape
    out = torch.zeros(2, t, n, 1, h, w, device=solo.device)
    for i in range(n):
        keep = 1.0 - dilate_masks(mask[:, i] > 0.5, 2 * MASK_MARGIN + 1).float()
        effect = least_alpha[:, i] * keep
        # what stays put is there in (nearly) every frame; a moving layer leaves most pixels bare in some frames,
        # which a median would not see where the layer overlaps itself for half the clip
        static = effect.kthvalue(max(1, round(_STATIC_QUANTILE * t)), dim=0, keepdim=True).values
        moving = (effect - static).clamp_min(0.0)
        # each video holds half of noise_sigma² per channel (solo − background holds both)
        noise_var = float(noise_sigma[i].square().sum()) / 2
        sums = _pair_sums(solo[:, i], background[:, i], keep, effect, moving, noise_var)
        out[:, :, i] = _regress(sums, effect, keep, pool)
    return out[0], out[1]


# Frame pairs whose changes are computed at once (bounds the memory of a long clip at full size).
_PAIR_CHUNK = 16


def _pair_sums(solo: torch.Tensor, background: torch.Tensor, keep: torch.Tensor, effect: torch.Tensor,
               moving: torch.Tensor, noise_var: float) -> list[torch.Tensor]:
    """Per frame ``t``, the statistics ``[T, 1, H, W]`` of the pairs ``(t, t ± gap)`` in which the layer moved: weight,
    solo×background change, background change², solo change², noise energy of a change."""
    t = solo.shape[0]
    support = (effect > SUPPORT).float() * keep
    has_layer = moving.flatten(1).gt(0).any(dim=1)
    pairs = [(frame, frame + offset) for gap in FRAME_GAPS for offset in (-gap, gap)
             for frame in range(t) if 0 <= frame + offset < t]
    frames = torch.tensor([a for a, _ in pairs], dtype=torch.long, device=solo.device)
    others = torch.tensor([b for _, b in pairs], dtype=torch.long, device=solo.device)
    # nothing moves, or no effect to read in this frame: the background under the layer did not change
    usable = has_layer[frames] & has_layer[others] & support[frames].flatten(1).gt(0).any(dim=1)
    frames, others = frames[usable], others[usable]
    sums = [torch.zeros_like(support) for _ in range(5)]
    if frames.numel() == 0:
        return sums
    shifts = torch.cat([layer_shifts(moving[frames[k:k + _PAIR_CHUNK], 0], moving[others[k:k + _PAIR_CHUNK], 0])
                        for k in range(0, len(frames), _PAIR_CHUNK)])
    moved_enough = shifts.square().sum(1) >= MIN_SHIFT ** 2  # less carries no information
    frames, others, shifts = frames[moved_enough], others[moved_enough], shifts[moved_enough]
    for k in range(0, len(frames), _PAIR_CHUNK):
        f, o, shift = frames[k:k + _PAIR_CHUNK], others[k:k + _PAIR_CHUNK], shifts[k:k + _PAIR_CHUNK]
        moved = shift_frames(torch.cat([solo[o], background[o], keep[o]], dim=1), shift)
        inside = (moved[:, 6:] > 0.99).float() * support[f]
        # Changes are compared above the finest scale: resampling (this shift, and the alignment of the background
        # to the solo) softens the finest detail of one video and not the other, which read as opacity.
        changes = gaussian_blur(torch.cat([moved[:, :3] - solo[f], moved[:, 3:6] - background[f]], dim=1),
                                CHANGE_BLUR)
        solo_change, bg_change = changes[:, :3], changes[:, 3:]
        # the shifted frame's noise is partly averaged away by the interpolation, and the blur keeps 1/(4π σ²)
        gain = torch.tensor([(1.0 + _interpolation_noise_gain(dx) * _interpolation_noise_gain(dy))
                             for dx, dy in shift.tolist()], device=solo.device).view(-1, 1, 1, 1)
        change_noise = noise_var * gain / (4 * math.pi * CHANGE_BLUR ** 2)
        for j, value in enumerate((inside, (solo_change * bg_change).sum(1, keepdim=True) * inside,
                                   bg_change.square().sum(1, keepdim=True) * inside,
                                   solo_change.square().sum(1, keepdim=True) * inside, change_noise * inside)):
            sums[j].index_add_(0, f, value)
    return sums


def _interpolation_noise_gain(shift: float) -> float:
    """Variance of white noise after resampling at a fractional ``shift`` along one axis with the bicubic kernel
    ``shift_frames`` uses (PyTorch's, A = −0.75): the sum of the squared weights."""
    a, f = -0.75, shift - math.floor(shift)

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(f + 1) ** 2 + near(f) ** 2 + near(1 - f) ** 2 + far(2 - f) ** 2


def _regress(sums: list[torch.Tensor], effect: torch.Tensor, keep: torch.Tensor, pool: float) -> torch.Tensor:
    """``motion_alpha``'s reading and trust ``[2, T, 1, H, W]`` of one object from its ``_pair_sums``, each pooled
    over a Gaussian neighbourhood of ``pool`` pixels."""
    support = (effect > SUPPORT).float() * keep
    pooled = [gaussian_blur(x, pool) for x in sums]
    weight = pooled[0].clamp_min(1e-6)
    cross = pooled[1] / weight
    change_noise = pooled[4] / weight
    bg_energy = pooled[2] / weight - change_noise
    solo_energy = pooled[3] / weight - change_noise
    trusted = (bg_energy > TEXTURE_SNR * change_noise) & (bg_energy > 1e-6) & (pooled[0] > 0.2) & (support > 0)
    alpha = (1.0 - cross / bg_energy.clamp_min(1e-8)).clamp(0.0, 1.0)
    explained = cross.square() / bg_energy.clamp_min(1e-8) / solo_energy.clamp_min(1e-8)
    trust = ((explained - R2_RAMP[0]) / (R2_RAMP[1] - R2_RAMP[0])).clamp(0.0, 1.0)
    return torch.stack([alpha * trusted, trust * trusted])
