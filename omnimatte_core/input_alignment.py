"""Bring a background video in line with a solo video before the layer fit, and measure what differs between them.

The solo and background videos a user feeds the fit come from two separate generations of a video model, or from a
temporal-median plate of a real camera. Away from the object and its effects they should be equal, but they differ
by a global sub-pixel shift, a slight colour drift and noise/compression. A layer fit would explain the first two as a
veil of alpha over the whole frame (a 2 % darkening is exactly a black layer at alpha 0.02; a 0.5 px shift leaves
edge-shaped differences everywhere), and noise as speckle.

:func:`align_background` therefore fits, per frame, a translation and a per-channel gain and offset that map the
background onto the solo video, by Gauss-Newton on the pixels outside the dilated object mask, with Tukey weights so
the object's effects (shadows, reflections — they lie outside the mask) do not pull the fit. What remains between the
solo and the aligned background is noise: its level per channel (a robust standard deviation, 1.4826 × MAD) is the
scale the fit uses to tell effects from noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .clean_plate import dilate_masks

MAX_SIDE = 320
"""Frames are measured at most this large (area-downscaled): the shift stays sub-pixel accurate and the cost small."""
MAX_SHIFT = 4.0
"""Largest translation (pixels of the input) the alignment accepts; beyond it the estimate is clipped."""
_TUKEY_C = 4.685
_NOISE_FLOOR = 1.0 / 1024  # below a tenth of one 8-bit level: exact inputs
# The Tukey scale starts wide and narrows to this floor: with a narrow scale from the start, the pixels that carry
# the information on the shift (strong edges, whose misaligned differences are largest) would get weight 0.
_SCALE_START, _SCALE_END = 0.1, 0.005
_PRESMOOTH = 1.0  # Gaussian sigma (pixels of the measured frames): noise on the regressor would bias the gain down
_SAMPLES = 1 << 20  # residual samples for the noise model


@dataclass
class Alignment:
    """The background mapped onto each solo video, and the noise left between them.

    - ``background [N,T,3,H,W]``: per object, ``gain · background(x + shift) + offset``.
    - ``shift [N,T,2]``: (dx, dy) in pixels; ``gain``, ``offset`` ``[N,T,3]``.
    - ``noise_sigma [N,3]``: robust standard deviation of ``solo − aligned background`` outside the dilated masks on
      flat ground, per channel (it holds the noise of both videos).
    - ``edge_noise [N,3]``: how the residual grows at the background's edges: its standard deviation at a pixel is
      ``sqrt(noise_sigma² + (edge_noise · |∇background|)²)`` (see :func:`pixel_noise`). What is left of a sub-pixel
      misalignment, resampling and compression ringing all sit on edges, and a global level would either miss them
      or hide faint effects on flat ground.
    """

    background: torch.Tensor
    shift: torch.Tensor
    gain: torch.Tensor
    offset: torch.Tensor
    noise_sigma: torch.Tensor
    edge_noise: torch.Tensor


def shift_frames(video: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``video [T,C,H,W]`` sampled at ``x + shift[t]`` (bicubic, borders replicated)."""
    t, _, h, w = video.shape
    ys = torch.linspace(-1, 1, h, device=video.device, dtype=video.dtype)
    xs = torch.linspace(-1, 1, w, device=video.device, dtype=video.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=video.device, dtype=video.dtype)
    offset = (shift.to(video.dtype) * scale).view(t, 1, 1, 2)
    grid = torch.stack([gx, gy], dim=-1).unsqueeze(0) + offset
    return F.grid_sample(video, grid, mode="bicubic", padding_mode="border", align_corners=True)


# Blurs of at least this many pixels of sigma run on a grid coarser by a factor sigma // this (see gaussian_blur).
_COARSE_BLUR_PIXELS = 4.0


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[B,C,H,W]`` with reflected borders (kernel radius 3σ); identity for σ ≤ 0.

    A wide blur (σ ≥ 2·``_COARSE_BLUR_PIXELS``) runs on a coarser grid (``_coarse_gaussian_blur``): the fit's effect
    colour average and coarse reconstruction blur by 16–40 px at every step, and a 100–250-tap depthwise convolution
    over every pixel made them most of a full-resolution step."""
    if sigma <= 0:
        return x
    if sigma >= 2 * _COARSE_BLUR_PIXELS:
        return _coarse_gaussian_blur(x, sigma)
    return _separable_gaussian_blur(x, sigma)


def _coarse_gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The Gaussian blur of ``x`` by ``sigma`` px computed on a grid ``f = sigma // _COARSE_BLUR_PIXELS`` times
    coarser: reflect-pad by 3σ (so the borders match the exact blur), blur by f/2 px, average ``f × f`` cells, blur
    the rest of the variance there, upsample bilinearly and crop. Only the short blur and the resampling touch every
    pixel; the wide kernel runs on 1/f² of them. Within 2·10⁻⁴ of the exact blur on 1080p noise and within 0.1 % in
    its gradient (``tests/omnimatte/test_gaussian_blur.py``)."""
    f = int(sigma // _COARSE_BLUR_PIXELS)
    h, w = x.shape[-2:]
    pad = min(int(3 * sigma + 0.5), h - 1, w - 1)
    pad -= pad % f
    with torch.autocast(x.device.type, enabled=False):
        y = F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad > 0 else x
        padded = y.shape[-2:]
        # A short blur first: the gradient of a bare f × f average is constant over each cell, which would print the
        # coarse grid into whatever the blur's gradient reaches (alpha, through the fit's colour average).
        y = F.avg_pool2d(_separable_gaussian_blur(y, 0.5 * f), f, ceil_mode=True, count_include_pad=False)
        # the short blur has variance f²/4, an f-px box (f² − 1)/12, bilinear upsampling by f adds about f²/6; the
        # coarse blur adds what is left of σ² (in coarse pixels)
        # (σ ≥ 4f keeps this positive)
        rest = math.sqrt(sigma ** 2 - f * f / 4 - (f * f - 1) / 12 - f * f / 6) / f
        y = _separable_gaussian_blur(y, rest)
        y = F.interpolate(y, scale_factor=f, mode="bilinear", align_corners=False)[..., :padded[0], :padded[1]]
        return y[..., pad:pad + h, pad:pad + w]


def _separable_gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if radius < 1:
        return x
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    # In the input's own precision even under autocast: the fit averages colours and residuals whose differences
    # (a faint effect's texture, 0.002-0.005) are at bf16's resolution.
    with torch.autocast(x.device.type, enabled=False):
        y = F.pad(x, (radius, radius, 0, 0), mode="reflect")
        y = F.conv2d(y, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        y = F.pad(y, (0, 0, radius, radius), mode="reflect")
        return F.conv2d(y, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences along x and y of ``[T,C,H,W]`` (one-sided at the borders)."""
    gx = torch.zeros_like(x)
    gy = torch.zeros_like(x)
    gx[..., 1:-1] = (x[..., 2:] - x[..., :-2]) / 2
    gy[..., 1:-1, :] = (x[..., 2:, :] - x[..., :-2, :]) / 2
    return gx, gy


def gradient_magnitude(video: torch.Tensor) -> torch.Tensor:
    """Per-channel ``|∇x|`` (central differences, pixels) of ``[..., C, H, W]``."""
    shape = video.shape
    gx, gy = _gradients(video.reshape(-1, *shape[-3:]))
    return (gx.square() + gy.square()).sqrt().reshape(shape)


def pixel_noise(background: torch.Tensor, noise_sigma: torch.Tensor, edge_noise: torch.Tensor,
                grad: torch.Tensor | None = None) -> torch.Tensor:
    """Standard deviation of the residual between a solo and its aligned ``background [..., 3, H, W]`` at every pixel
    and channel: ``sqrt(noise_sigma² + (edge_noise · |∇background|)²)``; ``noise_sigma``, ``edge_noise`` broadcast
    to ``[..., 3, 1, 1]``. ``grad``: ``gradient_magnitude(background)`` when the caller already has it."""
    grad = gradient_magnitude(background) if grad is None else grad
    return (noise_sigma.square() + (edge_noise * grad).square()).sqrt()


def _edge_model(residual: torch.Tensor, grad: torch.Tensor, generator: torch.Generator, bins: int = 8):
    """Fit ``var(residual) = s0² + (e·grad)²`` per channel from ``[C, K]`` samples: robust variance (MAD²) in
    ``bins`` quantile bins of the gradient, then least squares over the bins with both terms kept >= 0."""
    if residual.shape[1] > _SAMPLES:
        pick = torch.randint(residual.shape[1], (_SAMPLES,), generator=generator).to(residual.device)
        residual, grad = residual[:, pick], grad[:, pick]
    s0, edge = [], []
    for r, g in zip(residual, grad):
        order = torch.argsort(g)
        chunks_r, chunks_g = order.chunk(bins), order.chunk(bins)
        var = torch.stack([(1.4826 * (r[c] - r[c].median()).abs().median()).square() for c in chunks_r])
        g2 = torch.stack([g[c].square().mean() for c in chunks_g])
        a = torch.stack([torch.ones_like(g2), g2], dim=1)
        coef = torch.linalg.lstsq(a.cpu().double(), var.cpu().double().unsqueeze(1)).solution.squeeze(1)
        slope = float(coef[1]) if float(coef[1]) > 0 else 0.0
        base = float(var[0]) if slope == 0.0 else max(float(coef[0]), 0.0)
        if slope > 0 and base <= 0:
            base = float(var[0])
        s0.append(math.sqrt(max(base, 0.0)))
        edge.append(math.sqrt(slope))
    return (torch.tensor(s0, device=residual.device), torch.tensor(edge, device=residual.device))


def _fit_frames(solo: torch.Tensor, background: torch.Tensor, valid: torch.Tensor, iterations: int):
    """Gauss-Newton for ``solo ≈ g·background(x + d) + o`` per frame. ``[T,3,H,W]`` videos, ``valid [T,1,H,W]``.

    Returns shift ``[T,2]`` (pixels of these frames), gain and offset ``[T,3]``."""
    t = solo.shape[0]
    dtype = solo.dtype
    shift = torch.zeros(t, 2, device=solo.device, dtype=dtype)
    gain = torch.ones(t, 3, device=solo.device, dtype=dtype)
    offset = torch.zeros(t, 3, device=solo.device, dtype=dtype)
    eye = torch.eye(8, device=solo.device, dtype=dtype)
    solo, background = gaussian_blur(solo, _PRESMOOTH), gaussian_blur(background, _PRESMOOTH)
    for k in range(iterations):
        floor = _SCALE_START * (_SCALE_END / _SCALE_START) ** min(1.0, k / max(1, iterations // 2))
        warped = shift_frames(background, shift)
        gx, gy = _gradients(warped)
        residual = solo - (gain.view(t, 3, 1, 1) * warped + offset.view(t, 3, 1, 1))
        # Tukey weights on a robust per-frame scale: effects outside the mask get weight 0
        sample = residual.abs().masked_fill(~valid.expand_as(residual), float("nan")).flatten(1)
        scale = (1.4826 * sample.nanmedian(dim=1).values).clamp_min(floor).view(t, 1, 1, 1)
        u = residual / (_TUKEY_C * scale)
        weight = ((1 - u.square()).clamp_min(0).square() * valid).flatten(2)  # [T,3,P]
        g = gain.view(t, 3, 1)
        # Jacobian columns: dx, dy (shared), gain_c, offset_c (own channel) — built channel by channel
        jac = torch.zeros(t, 3, 8, weight.shape[-1], device=solo.device, dtype=dtype)
        jac[:, :, 0] = g * gx.flatten(2)
        jac[:, :, 1] = g * gy.flatten(2)
        for c in range(3):
            jac[:, c, 2 + c] = warped[:, c].flatten(1)
            jac[:, c, 5 + c] = 1.0
        wj = jac * weight.unsqueeze(2)
        normal = torch.einsum("tcip,tcjp->tij", wj, jac)
        rhs = torch.einsum("tcip,tcp->ti", wj, residual.flatten(2))
        # a little damping keeps textureless frames (no information on the shift) at zero shift
        damping = 1e-6 * normal.diagonal(dim1=1, dim2=2).mean(1).view(t, 1, 1) + 1e-9
        step = torch.linalg.solve(normal + damping * eye, rhs.unsqueeze(-1)).squeeze(-1)
        shift = shift + step[:, :2]
        gain = gain + step[:, 2:5]
        offset = offset + step[:, 5:]
        if k >= iterations // 2 and float(step[:, :2].abs().max()) < 1e-3 and float(step[:, 2:].abs().max()) < 1e-5:
            break
    return shift, gain, offset


def align_background(
    solos: torch.Tensor,
    background: torch.Tensor,
    masks: torch.Tensor,
    *,
    exclude_width: int = 9,
    iterations: int = 10,
    estimate_shift: bool = True,
    seed: int = 0,
) -> Alignment:
    """Map ``background [T,3,H,W]`` onto each of ``solos [N,T,3,H,W]`` and measure the noise left between them.

    ``masks [N,T,1,H,W]``: each object's mask; pixels within ``exclude_width`` (a square, as the trimask dilation) of
    it are left out of the alignment and of the noise estimate. ``estimate_shift=False`` fits colour only (gain and
    offset). All tensors on one device; float32 math.
    """
    n, t, _, h, w = solos.shape
    device = solos.device
    solos32 = solos.float()
    background32 = background.float()
    excluded = dilate_masks(masks[:, :, 0] > 0.5, exclude_width).unsqueeze(2)  # [N,T,1,H,W]
    factor = max(h, w) / MAX_SIDE
    small = (max(1, round(h / factor)), max(1, round(w / factor))) if factor > 1 else (h, w)
    scale_x, scale_y = w / small[1], h / small[0]
    border = torch.zeros(1, 1, *small, dtype=torch.bool, device=device)
    border[..., 2:-2, 2:-2] = True
    generator = torch.Generator().manual_seed(seed)

    aligned, shifts, gains, offsets, sigmas, edges = [], [], [], [], [], []
    bg_small = F.interpolate(background32, size=small, mode="area") if small != (h, w) else background32
    for i in range(n):
        solo_small = F.interpolate(solos32[i], size=small, mode="area") if small != (h, w) else solos32[i]
        keep = ~excluded[i]
        keep_small = (F.interpolate(keep.float(), size=small, mode="area") > 0.999) & border
        if estimate_shift:
            shift, gain, offset = _fit_frames(solo_small, bg_small, keep_small, iterations)
            shift = shift * torch.tensor([scale_x, scale_y], device=device)
            shift = shift.clamp(-MAX_SHIFT, MAX_SHIFT)
        else:
            shift = torch.zeros(t, 2, device=device)
            gain, offset = _fit_colour(solo_small, bg_small, keep_small)
        moved = shift_frames(background32, shift) if estimate_shift else background32
        moved = (gain.view(t, 3, 1, 1) * moved + offset.view(t, 3, 1, 1)).clamp(0.0, 1.0)
        residual = (solos32[i] - moved).transpose(0, 1)  # [3,T,H,W]
        if bool(keep.any()):
            grad = gradient_magnitude(moved).transpose(0, 1)
            sigma, edge = _edge_model(residual[:, keep[:, 0]], grad[:, keep[:, 0]], generator)
        else:
            sigma, edge = torch.zeros(3, device=device), torch.zeros(3, device=device)
        edges.append(edge)
        aligned.append(moved.to(background.dtype))
        shifts.append(shift)
        gains.append(gain)
        offsets.append(offset)
        sigmas.append(sigma.clamp_min(_NOISE_FLOOR))
    return Alignment(background=torch.stack(aligned), shift=torch.stack(shifts), gain=torch.stack(gains),
                     offset=torch.stack(offsets), noise_sigma=torch.stack(sigmas), edge_noise=torch.stack(edges))


def _fit_colour(solo: torch.Tensor, background: torch.Tensor, valid: torch.Tensor):
    """Gain and offset only (no shift): one weighted least-squares line per frame and channel, Tukey-reweighted."""
    t = solo.shape[0]
    gain = torch.ones(t, 3, device=solo.device)
    offset = torch.zeros(t, 3, device=solo.device)
    solo, background = gaussian_blur(solo, _PRESMOOTH), gaussian_blur(background, _PRESMOOTH)
    for k in range(6):
        floor = _SCALE_START * (_SCALE_END / _SCALE_START) ** min(1.0, k / 3)
        residual = solo - (gain.view(t, 3, 1, 1) * background + offset.view(t, 3, 1, 1))
        sample = residual.abs().masked_fill(~valid.expand_as(residual), float("nan")).flatten(1)
        scale = (1.4826 * sample.nanmedian(dim=1).values).clamp_min(floor).view(t, 1, 1, 1)
        u = residual / (_TUKEY_C * scale)
        weight = (1 - u.square()).clamp_min(0).square() * valid
        sw = weight.sum((2, 3)).clamp_min(1e-8)
        mb = (weight * background).sum((2, 3)) / sw
        ms = (weight * solo).sum((2, 3)) / sw
        cov = (weight * (background - mb.view(t, 3, 1, 1)) * (solo - ms.view(t, 3, 1, 1))).sum((2, 3))
        var = (weight * (background - mb.view(t, 3, 1, 1)).square()).sum((2, 3)).clamp_min(1e-8)
        gain = cov / var
        offset = ms - gain * mb
    return gain, offset
