"""Live previews while Casper samples: predicted clean latents shown as colour without running the VAE.

A preview has to cost next to nothing per denoising step, so it is a linear map from the latent channels to RGB
(plus a bias), fitted by least squares on this run's own encoded input video against that video shrunk to the
latent grid. The map is rough (no detail finer than the 8×8-pixel latent cell) but shows the colours and where the
objects are being removed, step by step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Rows used for the least-squares fit (a strided subset of latent cells when the video has more).
MAX_FIT_SAMPLES = 65_536
# Ridge term relative to the mean diagonal of the normal equations, so flat videos still give a stable map.
RIDGE = 1e-3


def latent_frame_targets(pixels: torch.Tensor, num_latents: int, size: tuple[int, int]) -> torch.Tensor:
    """Per latent frame the pixels it encodes, ``[F,3,h,w]``, from ``pixels [3,T,H,W]``.

    The CogVideoX VAE encodes frame 0 alone and then ``r`` frames per latent (``r`` = 4 for T = 4(F−1)+1): latent
    frame k ≥ 1 stands for pixel frames ``r(k−1)+1 … rk``, taken as their mean, area-resized to the latent grid.
    """
    frames = pixels.shape[1]
    ratio = max((frames - 1) // max(num_latents - 1, 1), 1)
    targets = [pixels[:, :1].mean(dim=1)]
    for k in range(1, num_latents):
        begin = min(ratio * (k - 1) + 1, frames - 1)
        targets.append(pixels[:, begin : min(ratio * k + 1, frames)].mean(dim=1))
    stacked = torch.stack(targets)  # [F,3,H,W]
    return F.interpolate(stacked, size=size, mode="area")


def fit_latent_to_rgb(latents: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """The ``[C+1, 3]`` map (weights, then bias) taking latents ``[F,C,h,w]`` to the colours of ``pixels``.

    Args:
        latents: the encoded video ``[F,C,h,w]`` (any device and dtype; in the space the sampler works in).
        pixels: the video that was encoded, ``[3,T,H,W]`` (any value range; the map reproduces it).
    """
    latents = latents.detach().float().cpu()
    num_latents, channels, height, width = latents.shape
    targets = latent_frame_targets(pixels.detach().float().cpu(), num_latents, (height, width))
    x = latents.permute(0, 2, 3, 1).reshape(-1, channels)
    y = targets.permute(0, 2, 3, 1).reshape(-1, 3)
    stride = max(1, -(-x.shape[0] // MAX_FIT_SAMPLES))
    x, y = x[::stride], y[::stride]
    x = torch.cat([x, torch.ones(x.shape[0], 1)], dim=1)
    normal = x.T @ x
    ridge = RIDGE * normal.diagonal().mean().clamp_min(1e-8)
    return torch.linalg.solve(normal + ridge * torch.eye(channels + 1), x.T @ y)


def latents_to_image(latent_frame: torch.Tensor, mapping: torch.Tensor, scale: int = 8,
                     value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """One latent frame ``[C,h,w]`` → an ``[h·scale, w·scale, 3]`` float image in 0..1 on the CPU.

    ``value_range`` is the range of the pixels the map was fitted on (−1..1 for the pipeline's pixels).
    """
    latent = latent_frame.detach().float().cpu()
    channels = latent.shape[0]
    rgb = torch.einsum("chw,cd->dhw", latent, mapping[:channels]) + mapping[channels].view(3, 1, 1)
    low, high = value_range
    rgb = ((rgb - low) / (high - low)).clamp(0, 1)
    if scale > 1:
        rgb = F.interpolate(rgb[None], scale_factor=scale, mode="bilinear", align_corners=False)[0].clamp(0, 1)
    return rgb.permute(1, 2, 0).contiguous()
