"""The terms of the omnimatte objective (paper Sec. 3.5, supplement Sec. D), each a small function.

Every function returns one value **per object** (shape ``[N]``): the objects are independent problems fitted in one
optimisation, so each object's loss is a mean over its own pixels and the total is their sum — an object's gradient does
not depend on how many other objects share the batch.

Tensors are ``[B, N, C, H, W]``: B frames of the batch, N objects.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .input_alignment import gaussian_blur


def _mean_per_object(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(0, 1).reshape(x.shape[1], -1).mean(dim=1)


def over_background(rgb: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """The layer composited over the background: α·rgb + (1 − α)·bg."""
    return alpha * rgb + (1.0 - alpha) * background


def reconstruction(composite: torch.Tensor, solo: torch.Tensor, metric: str,
                   tolerance: torch.Tensor | None = None) -> torch.Tensor:
    """L2 (base stage) or L1 (full-resolution stage, robust to upsampler hallucinations) error to the solo video.

    ``tolerance`` (broadcastable to the error, e.g. ``[1,N,3,1,1]``): errors up to it cost nothing (a dead zone), so
    differences at the noise level between solo and background do not pay for opacity."""
    err = composite - solo
    if tolerance is not None:
        err = (err.abs() - tolerance).clamp_min(0.0)
    err = err.square() if metric == "l2" else err.abs()
    return _mean_per_object(err)


def coarse_reconstruction(composite: torch.Tensor, solo: torch.Tensor, sigma: float,
                          tolerance: torch.Tensor) -> torch.Tensor:
    """L1 error of the residual blurred by a Gaussian of ``sigma`` pixels, with a dead zone of ``tolerance`` (the
    noise level *after* that blur): what is coherent over a neighbourhood — a faint effect under a wrong alpha —
    survives the blur, noise does not."""
    err = composite - solo
    shape = err.shape
    blurred = gaussian_blur(err.reshape(-1, shape[-3], *shape[-2:]), sigma).reshape(shape)
    return _mean_per_object((blurred.abs() - tolerance).clamp_min(0.0))


def sparsity(alpha: torch.Tensor, beta_l0: float, beta_l1: float, sharpness: float,
             weight: torch.Tensor | None = None) -> torch.Tensor:
    """β0·L0-like + β1·L1 alpha sparsity. The L0-like term 2·(σ(k·α) − 0.5) is 0 at α = 0 and near 1 for any
    clearly visible α, so it favours few non-zero pixels; the L1 term favours small values. ``weight`` (broadcastable
    to alpha): a per-pixel factor on both."""
    l0 = 2.0 * (torch.sigmoid(sharpness * alpha) - 0.5)
    l1 = alpha
    if weight is not None:
        l0, l1 = l0 * weight, l1 * weight
    return beta_l0 * _mean_per_object(l0) + beta_l1 * _mean_per_object(l1)


def mask_supervision(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Balanced L2 between alpha and the object mask: the mean over the mask's pixels plus the mean over the rest,
    so a small object is pulled as hard as a large one."""
    sq = (alpha - mask).square()
    inside = mask.transpose(0, 1).reshape(mask.shape[1], -1)
    sq = sq.transpose(0, 1).reshape(sq.shape[1], -1)
    outside = 1.0 - inside
    return (sq * inside).sum(1) / inside.sum(1).clamp_min(1.0) + (sq * outside).sum(1) / outside.sum(1).clamp_min(1.0)


def mask_inside(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L2 between alpha and 1 over the mask's pixels only (objects are opaque where their mask says so)."""
    sq = ((1.0 - alpha).square() * mask).transpose(0, 1).reshape(mask.shape[1], -1)
    return sq.sum(1) / mask.transpose(0, 1).reshape(mask.shape[1], -1).sum(1).clamp_min(1.0)


def alpha_supervision(alpha: torch.Tensor, target: torch.Tensor, weight_map: torch.Tensor) -> torch.Tensor:
    """L2 to the upsampled base alpha where ``weight_map`` is 1 (away from alpha edges)."""
    sq = ((alpha - target).square() * weight_map).transpose(0, 1).reshape(alpha.shape[1], -1)
    w = weight_map.transpose(0, 1).reshape(alpha.shape[1], -1)
    return sq.sum(1) / w.sum(1).clamp_min(1.0)


# Change of alpha per base-resolution pixel above which a pixel is on an edge (``edge_band``): an object's boundary
# falls from 1 to 0 over a pixel or two; a soft shadow or a reflection changes by a few hundredths per pixel.
EDGE_STEP = 0.25


def edge_band(alpha: torch.Tensor, radius: int, scale: float = 1.0) -> torch.Tensor:
    """1 on a band of ``radius`` pixels around the edges of ``alpha`` ``[..., H, W]``, 0 elsewhere. ``alpha`` is the
    base alpha upsampled by ``scale``; an edge is where it changes by more than ``EDGE_STEP`` per base pixel, the
    boundaries an upsampler may have aliased. The inside of a translucent effect is not an edge: with every pixel
    between 0.02 and 0.98 counted as one, a 50 % shadow went unsupervised at full resolution and drifted from the
    base's alpha (effect alpha error 0.008 → 0.085 at 768×1344)."""
    shape = alpha.shape
    flat = alpha.reshape(-1, 1, *shape[-2:]).float()
    gy, gx = torch.gradient(flat, dim=(2, 3))
    steep = ((gx.square() + gy.square()).sqrt() * scale > EDGE_STEP).to(alpha.dtype)
    if radius > 0:
        steep = F.max_pool2d(steep, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return steep.reshape(shape)
