"""A translucent effect's opacity read from how much of the background's texture shows through it.

Over a layer of locally constant colour ``c`` and opacity ``α`` the solo video is ``α·c + (1 − α)·bg``: its fine detail
is the background's, scaled by ``1 − α``. Regressing the solo's detail on the background's over a neighbourhood gives
``1 − α`` whatever the layer's colour. That tells a brown dust cloud at α 0.25 from a faint darkening at its least
opacity 0.06, which the per-pixel colour difference cannot, and it survives noise the per-pixel difference does not
(measured: dust whose least opacity averages 0.06 against a true 0.24 is read at 0.21–0.26 under noise of 4/255).

The estimate is kept only where it can be trusted:

- the background has texture well above its own noise there (the noise would bias the regression towards α = 1 and
  is subtracted from it, which only works while the texture dominates);
- the attenuated background explains most of the solo's detail (R²): a reflection carries texture of its own, and
  its estimate is noise;
- it stands out from what the same estimator reads far from the object, where nothing is there: JPEG and resampling
  attenuate fine detail too, and that level differs per clip;
- with several objects whose solos are separate videos (a removal model's outputs), only the part that not every
  layer reads at that place counts: an effect belongs to one solo, the other solos have it removed. Where the solos
  are one video (the weight-free clean plate's solos are the input outside the other objects' masks), every layer
  keeps every effect there, and nothing is subtracted.
"""
from __future__ import annotations

import math

import torch

from .input_alignment import gaussian_blur
from .masks import dilate_masks

DETAIL_SIGMAS = (1.0, 3.0)
"""Detail is the band between Gaussian blurs of these widths (pixels): below it is pixel noise, above it the
layer's own smooth colour."""
TEXTURE_SNR = 20.0
"""The background's detail energy must exceed this multiple of its noise energy for an estimate. Over a pooling
neighbourhood of about a dozen independent detail samples, the reading's standard error is then about 0.06 — the
size of the margin by which it must exceed the least opacity before the fit's start follows it (at 4 it was 0.14,
and false readings in the dimly textured water of the test scenes doubled)."""
R2_RAMP = (0.6, 0.8)
"""Share of the solo's detail that the attenuated background must explain: none of the estimate is kept below the
first value, all of it above the second."""
NULL_MADS = 4.0
"""An estimate counts only above the median plus this many robust deviations of the estimates far from the object."""
MASK_MARGIN = 3
"""Pixels around the object mask left out of the regression (the object's own texture is not the background's)."""
FAR_MARGIN = 10
"""Pixels from the object mask beyond which estimates make up the null distribution."""
SAME_VIDEO_LEVEL = 0.5 / 255
"""Two solos whose every channel differs by less than this (half an 8-bit level) at a pixel are one video there."""
SAME_VIDEO_SHARE = 0.5
"""Share of a reading's neighbourhood where two solos are one video beyond which the shared reading is kept."""
_FRAMES_PER_CHUNK = 8


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    shape = x.shape
    return gaussian_blur(x.reshape(-1, *shape[-3:]), sigma).reshape(shape)


def _detail(x: torch.Tensor) -> torch.Tensor:
    return _blur(x, DETAIL_SIGMAS[0]) - _blur(x, DETAIL_SIGMAS[1])


def _detail_noise_gain() -> float:
    """Variance of white noise of variance 1 after the detail band-pass (continuous Gaussians)."""
    s1, s2 = (s * s for s in DETAIL_SIGMAS)
    return 1.0 / (4 * math.pi * s1) + 1.0 / (4 * math.pi * s2) - 1.0 / (math.pi * (s1 + s2))


def texture_alpha(solo: torch.Tensor, background: torch.Tensor, mask: torch.Tensor, noise_sigma: torch.Tensor,
                  pool: float) -> torch.Tensor:
    """Opacity of a locally constant translucent layer, from the background's texture showing through it.

    Args:
        solo, background: ``[T, N, 3, H, W]`` per object, the background aligned to that solo.
        mask: ``[T, N, 1, H, W]`` binary object masks.
        noise_sigma: ``[N, 3]`` standard deviation of ``solo − background`` where nothing differs (both videos'
            noise; half its variance is taken as the background's).
        pool: Gaussian width (pixels) of the neighbourhood each regression is taken over.

    Returns ``[T, N, 1, H, W]``: the estimate where it can be trusted (see the module's docstring), 0 elsewhere.
    """
    t, n, _, h, w = solo.shape
    noise_var = (noise_sigma.to(solo.device).square() / 2 * _detail_noise_gain()).view(n, 3, 1, 1)
    out = torch.zeros(t, n, 1, h, w, device=solo.device)
    far = torch.zeros(t, n, 1, h, w, dtype=torch.bool, device=solo.device)
    # per object and a few frames at a time: the band-passed copies of a whole 85-frame clip would take gigabytes
    for i in range(n):
        for start in range(0, t, _FRAMES_PER_CHUNK):
            frames = slice(start, start + _FRAMES_PER_CHUNK)
            out[frames, i], far[frames, i] = _read_frames(solo[frames, i], background[frames, i], mask[frames, i],
                                                          noise_var[i], pool)
    thresholds = [_null_threshold(out[:, i], far[:, i]) for i in range(n)]
    if n > 1:
        # Solos that are separate videos have the other objects and their effects removed: what all of them read at
        # one place is where the background itself differs from the solos (measured: a lattice tower read 0.28 in
        # every layer under the combined degradations, and up to 2 % of a layer went opaque there), not any one
        # object's effect. The null thresholds stay those of the whole readings: set from what is left, they fell,
        # and that scene's reflection went opaque over 2.4-2.8 % of it instead (three H200 runs).
        common = out.amin(dim=1, keepdim=True)
        out = torch.where(_one_video(solo, pool), out, (out - common).clamp_min(0.0))
    for i, threshold in enumerate(thresholds):
        out[:, i] = torch.where(out[:, i] > threshold, out[:, i], torch.zeros_like(out[:, i]))
    return out


def _null_threshold(readings: torch.Tensor, far: torch.Tensor) -> torch.Tensor | float:
    """The reading above which an estimate counts: the median plus ``NULL_MADS`` robust deviations of those ``far``
    from the object (0 when there are none)."""
    null = readings[far]
    if not null.numel():
        return 0.0
    median = null.median()
    return median + NULL_MADS * 1.4826 * (null - median).abs().median()


def _one_video(solo: torch.Tensor, pool: float) -> torch.Tensor:
    """``[T,1,1,H,W]``: where two of the solos ``[T,N,3,H,W]`` are one video over most of the reading's
    neighbourhood (``SAME_VIDEO_SHARE``). There an effect that one solo keeps is in the others too (the weight-free
    clean plate's solos), so a reading every layer shares may be an effect and is kept."""
    t, n, _, h, w = solo.shape
    same = torch.zeros(t, 1, 1, h, w, dtype=torch.bool, device=solo.device)
    for start in range(0, t, _FRAMES_PER_CHUNK):
        chunk = solo[start:start + _FRAMES_PER_CHUNK]
        for i in range(n):
            for j in range(i + 1, n):
                equal = ((chunk[:, i] - chunk[:, j]).abs().amax(dim=1, keepdim=True) < SAME_VIDEO_LEVEL).float()
                same[start:start + _FRAMES_PER_CHUNK, 0] |= _blur(equal, pool) > SAME_VIDEO_SHARE
    return same


def _read_frames(solo: torch.Tensor, background: torch.Tensor, mask: torch.Tensor, noise_var: torch.Tensor,
                 pool: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``texture_alpha`` for frames ``[t,3,H,W]`` of one object before the null threshold, and the map of pixels far
    from the object whose readings make up the null distribution."""
    keep = 1.0 - dilate_masks(mask > 0.5, 2 * MASK_MARGIN + 1).float()
    weight = _blur(keep, pool).clamp_min(1e-3)
    solo_detail, bg_detail = _detail(solo), _detail(background)
    cross = (_blur(solo_detail * bg_detail * keep, pool) / weight).sum(1, keepdim=True)
    bg_energy = (_blur(bg_detail.square() * keep, pool) / weight - noise_var).sum(1, keepdim=True)
    solo_energy = (_blur(solo_detail.square() * keep, pool) / weight - noise_var).sum(1, keepdim=True)
    textured = (bg_energy > TEXTURE_SNR * noise_var.sum()) & (weight > 0.5) & (keep > 0)
    alpha = (1.0 - cross / bg_energy.clamp_min(1e-8)).clamp(0.0, 1.0)
    explained = cross.square() / bg_energy.clamp_min(1e-8) / solo_energy.clamp_min(1e-8)
    trust = ((explained - R2_RAMP[0]) / (R2_RAMP[1] - R2_RAMP[0])).clamp(0.0, 1.0)
    far = ~dilate_masks(mask > 0.5, 2 * FAR_MARGIN + 1) & textured
    return alpha * trust * textured, far
