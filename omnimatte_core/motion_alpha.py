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
    """The translation ``(dx, dy)`` in pixels with ``after(x + shift) ≈ before(x)`` for ``[H, W]`` maps: the peak of
    their cross-correlation (zero-padded, so no wrap-around), refined to sub-pixel by Gauss-Newton on their
    difference (a parabola through the peak is biased towards whole pixels by up to half a pixel)."""
    h, w = before.shape
    a = gaussian_blur(before[None, None].float(), _MATCH_BLUR)
    b = gaussian_blur(after[None, None].float(), _MATCH_BLUR)
    size = (2 * h, 2 * w)
    corr = torch.fft.irfft2(torch.fft.rfft2(b[0, 0], s=size) * torch.fft.rfft2(a[0, 0], s=size).conj(), s=size)
    iy, ix = divmod(int(corr.argmax()), 2 * w)
    shift = torch.tensor([[ix if ix < w else ix - 2 * w, iy if iy < h else iy - 2 * h]], dtype=torch.float32,
                         device=before.device)
    for _ in range(_REFINE_STEPS):
        moved = shift_frames(b, shift)
        gy, gx = torch.gradient(moved[0, 0])
        residual = (moved - a)[0, 0]
        normal = torch.stack([torch.stack([(gx * gx).sum(), (gx * gy).sum()]),
                              torch.stack([(gx * gy).sum(), (gy * gy).sum()])])
        if float(torch.linalg.det(normal)) <= 1e-12:
            break
        step = torch.linalg.solve(normal, -torch.stack([(gx * residual).sum(), (gy * residual).sum()]))
        shift = shift + step.clamp(-1.0, 1.0).view(1, 2)
    return float(shift[0, 0]), float(shift[0, 1])


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
        for frame in range(t):
            out[:, frame, i] = _read_frame(frame, solo[:, i], background[:, i], keep, effect, moving, noise_var, pool)
    return out[0], out[1]


def _interpolation_noise_gain(shift: float) -> float:
    """Variance of white noise after resampling at a fractional ``shift`` along one axis with the bicubic kernel
    ``shift_frames`` uses (PyTorch's, A = −0.75): the sum of the squared weights."""
    a, f = -0.75, shift - math.floor(shift)

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(f + 1) ** 2 + near(f) ** 2 + near(1 - f) ** 2 + far(2 - f) ** 2


def _read_frame(frame: int, solo: torch.Tensor, background: torch.Tensor, keep: torch.Tensor, effect: torch.Tensor,
                moving: torch.Tensor, noise_var: float, pool: float) -> torch.Tensor:
    """``motion_alpha``'s reading and trust of one frame, ``[2, 1, H, W]``, from the pairs ``(frame, frame ± gap)``
    of one object's videos."""
    support = (effect[frame] > SUPPORT).float() * keep[frame]
    if not bool(support.any()):
        return torch.zeros(2, *support.shape, device=support.device)
    # weight, solo×bg change, bg change², solo change², noise energy of a change
    sums = [torch.zeros_like(support) for _ in range(5)]
    for gap in FRAME_GAPS:
        for other in (frame - gap, frame + gap):
            if not 0 <= other < solo.shape[0]:
                continue
            if not (bool(moving[frame].any()) and bool(moving[other].any())):
                continue  # nothing moves: the background under the layer did not change
            dx, dy = layer_shift(moving[frame, 0], moving[other, 0])
            if dx * dx + dy * dy < MIN_SHIFT ** 2:
                continue
            shift = torch.tensor([[dx, dy]], device=solo.device)
            frames = torch.cat([solo[other], background[other], keep[other]])[None]
            moved = shift_frames(frames, shift)[0]
            inside = (moved[6:] > 0.99).float() * support
            # Changes are compared above the finest scale: resampling (this shift, and the alignment of the background
            # to the solo) softens the finest detail of one video and not the other, which read as opacity.
            changes = gaussian_blur(torch.cat([moved[:3] - solo[frame], moved[3:6] - background[frame]])[None],
                                    CHANGE_BLUR)[0]
            solo_change, bg_change = changes[:3], changes[3:]
            # the shifted frame's noise is partly averaged away by the interpolation, and the blur keeps 1/(4π σ²)
            change_noise = noise_var * (1.0 + _interpolation_noise_gain(dx) * _interpolation_noise_gain(dy)) \
                / (4 * math.pi * CHANGE_BLUR ** 2)
            for k, value in enumerate((inside, solo_change * bg_change * inside, bg_change.square() * inside,
                                       solo_change.square() * inside, change_noise * inside)):
                sums[k] = sums[k] + value.sum(0, keepdim=True)
    pooled = [gaussian_blur(s[None], pool)[0] for s in sums]
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
