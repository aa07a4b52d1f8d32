"""From base-resolution removal outputs to full-resolution layers.

Casper runs at a base resolution (384×672 or similar). To get layers at the input's resolution (e.g. 1080p):

1. bring the removal outputs — the clean background and each solo video — to the input's size, either with a built-in
   resampler (``bilinear``, ``bicubic``, ``lanczos``, ``area``) or by passing videos the user upscaled elsewhere
   (a video super-resolution model, an editor), which are only checked;
2. inside each object's own mask (minus the other objects' masks) the solo video *is* the input video — the solo job
   keeps that object — so there the input's full-resolution pixels replace the upsampled ones;
3. run the bootstrapped full-resolution fit, :func:`omnimatte_core.fit.fit_layers_full_res`, supervised by the
   upsampled base alpha (supplement Sec. D).

Shapes: videos ``[T, C, H, W]``, stacks ``[N, T, C, H, W]``, float32 in 0..1.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # fit.py imports this module for its resampling
    from .fit import FittedLayers

__all__ = ["BASE_LONG_SIDE", "RESAMPLERS", "base_size", "resize_video", "check_upscaled_video",
           "upscale_removal_outputs", "solos_with_input_detail", "upsample_layers", "upscale_and_refine"]

RESAMPLERS = ("bilinear", "bicubic", "lanczos", "area", "nearest")
BASE_LONG_SIDE = 672
"""The longest side of the base-resolution fit (Casper's working width): larger inputs are fitted at most this large
first, then get the full-resolution fit."""
_CHUNK_FRAMES = 8
"""Frames resized at once: bounds the temporary memory of a 1080p resize to a few hundred MB."""


def _check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive (height, width), got {size!r}")
    return h, w


def base_size(size: tuple[int, int], long_side: int = BASE_LONG_SIDE) -> tuple[int, int]:
    """The base-resolution ``(height, width)`` of a video of ``size = (H, W)``: scaled down (never up) so that its
    longer side is at most ``long_side``, aspect kept, at least 8 pixels a side."""
    h, w = size
    scale = min(1.0, long_side / max(h, w))
    return max(8, round(h * scale)), max(8, round(w * scale))


def _resize_chunk(x: torch.Tensor, size: tuple[int, int], resampler: str) -> torch.Tensor:
    """``[B, C, h, w]`` → ``[B, C, H, W]``."""
    if resampler == "lanczos":
        # OpenCV's 8×8 Lanczos kernel, frame by frame, channels last.
        frames = x.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        out = np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_LANCZOS4).reshape(*size, -1)
                        for f in frames])
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(x.device)
    downscaling = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    if resampler == "area":
        return F.interpolate(x, size=size, mode="area")
    if resampler == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    return F.interpolate(x, size=size, mode=resampler, align_corners=False, antialias=downscaling)


def resize_video(video: torch.Tensor, size, resampler: str = "bicubic") -> torch.Tensor:
    """Resize every frame of ``video`` ``[..., C, h, w]`` to ``size`` = (H, W), clamped to 0..1.

    Args:
        video: float tensor with any leading dims (``[T,C,h,w]`` or ``[N,T,C,h,w]``), values in 0..1.
        size: target (height, width) in pixels.
        resampler: ``bilinear``, ``bicubic``, ``lanczos`` (OpenCV INTER_LANCZOS4), ``area`` or ``nearest``.
    """
    if resampler not in RESAMPLERS:
        raise ValueError(f"resampler must be one of {list(RESAMPLERS)}, got {resampler!r}")
    if not isinstance(video, torch.Tensor) or video.ndim < 3 or not video.is_floating_point():
        raise ValueError(f"video must be a float tensor [..., C, H, W], got "
                         f"{getattr(video, 'shape', type(video).__name__)}")
    size = _check_size(size)
    lead, (c, h, w) = video.shape[:-3], video.shape[-3:]
    if (h, w) == size:
        return video.clone()
    flat = video.reshape(-1, c, h, w)
    out = torch.empty(flat.shape[0], c, *size, dtype=video.dtype, device=video.device)
    for start in range(0, flat.shape[0], _CHUNK_FRAMES):
        chunk = flat[start:start + _CHUNK_FRAMES].float()
        out[start:start + _CHUNK_FRAMES] = _resize_chunk(chunk, size, resampler).clamp_(0.0, 1.0)
    return out.reshape(*lead, c, *size)


def check_upscaled_video(video: torch.Tensor, name: str, frames: int, size, channels: int = 3) -> torch.Tensor:
    """Check a video upscaled elsewhere: ``[T, C, H, W]`` with the input's frame count and size, values 0..1."""
    size = _check_size(size)
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [T,{channels},H,W], got {type(video).__name__}")
    if video.ndim != 4 or video.shape[1] != channels:
        raise ValueError(f"{name} must be [T,{channels},H,W], got {tuple(video.shape)}")
    if video.shape[0] != frames:
        raise ValueError(f"{name} has {video.shape[0]} frames but the input video has {frames}; "
                         "expected the same frame count")
    if tuple(video.shape[-2:]) != size:
        raise ValueError(f"{name} is {tuple(video.shape[-2:])} (H, W) but the input video is {size}; "
                         "expected it upscaled to the input's size")
    if not video.is_floating_point() or float(video.min()) < -1e-4 or float(video.max()) > 1 + 1e-4:
        raise ValueError(f"{name} must be a float tensor with values in 0..1")
    return video


def upscale_removal_outputs(
    solos_base: torch.Tensor,
    background_base: torch.Tensor,
    size,
    *,
    resampler: str = "bicubic",
    solos_upscaled: torch.Tensor | None = None,
    background_upscaled: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring the removal outputs to ``size`` = (H, W).

    Args:
        solos_base: ``[N, T, 3, h, w]`` solo videos at the base resolution.
        background_base: ``[T, 3, h, w]`` clean background at the base resolution.
        size: the input video's (H, W).
        resampler: built-in resampler for whatever is not given upscaled (see :func:`resize_video`).
        solos_upscaled: optional ``[N, T, 3, H, W]`` solos upscaled elsewhere (checked, used as they are).
        background_upscaled: optional ``[T, 3, H, W]`` background upscaled elsewhere.

    Returns:
        ``(solos_hr [N,T,3,H,W], background_hr [T,3,H,W])``.
    """
    size = _check_size(size)
    if not isinstance(solos_base, torch.Tensor) or solos_base.ndim != 5 or solos_base.shape[2] != 3:
        raise ValueError(f"solos_base must be [N,T,3,h,w], got {getattr(solos_base, 'shape', solos_base)!r}")
    n, t = solos_base.shape[:2]
    if not isinstance(background_base, torch.Tensor) or tuple(background_base.shape) != (t, 3,
                                                                                        *solos_base.shape[-2:]):
        raise ValueError(f"background_base must be [T,3,h,w] = {(t, 3, *solos_base.shape[-2:])} like the solos, "
                         f"got {tuple(getattr(background_base, 'shape', ()))}")
    if background_upscaled is not None:
        background_hr = check_upscaled_video(background_upscaled, "background_upscaled", t, size)
    else:
        background_hr = resize_video(background_base, size, resampler)
    if solos_upscaled is not None:
        if not isinstance(solos_upscaled, torch.Tensor) or solos_upscaled.ndim != 5 or solos_upscaled.shape[0] != n:
            raise ValueError(f"solos_upscaled must be [N,T,3,H,W] with N = {n}, "
                             f"got {tuple(getattr(solos_upscaled, 'shape', ()))}")
        solos_hr = torch.stack([check_upscaled_video(s, f"solos_upscaled[{i}]", t, size)
                                for i, s in enumerate(solos_upscaled)])
    else:
        solos_hr = resize_video(solos_base, size, resampler)
    return solos_hr, background_hr


def solos_with_input_detail(solos_hr: torch.Tensor, video_hr: torch.Tensor, masks_hr: torch.Tensor) -> torch.Tensor:
    """Put the input's full-resolution pixels into each solo video where that object alone is visible.

    Solo job i keeps object i, so inside its mask (and outside every other object's mask, where object i may be
    hidden behind another one in the input) the solo video equals the input; upsampling only blurred it there.

    Args:
        solos_hr: ``[N, T, 3, H, W]``; video_hr: ``[T, 3, H, W]``; masks_hr: ``[N, T, 1, H, W]`` (binary object masks).
    Returns:
        a new ``[N, T, 3, H, W]`` tensor.
    """
    binary = masks_hr > 0.5
    total = binary.sum(0, keepdim=True)
    only_this = binary & (total == 1)
    return torch.where(only_this, video_hr.unsqueeze(0).to(solos_hr.dtype), solos_hr)


def upsample_layers(rgb: torch.Tensor, alpha: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear upsampling of layers ``rgb [N,T,3,h,w]``, ``alpha [N,T,1,h,w]`` to ``size`` (H, W): the start and
    the alpha target of the full-resolution fit."""
    n, t = rgb.shape[:2]

    def up(x):
        y = F.interpolate(x.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
        return y.reshape(n, t, x.shape[2], *size).clamp(0.0, 1.0)

    return up(rgb), up(alpha)


def upscale_and_refine(
    base_fit,
    solos_base: torch.Tensor,
    background_base: torch.Tensor,
    video_hr: torch.Tensor,
    masks_hr: torch.Tensor,
    *,
    resampler: str = "bicubic",
    solos_upscaled: torch.Tensor | None = None,
    background_upscaled: torch.Tensor | None = None,
    input_detail: bool = True,
    preset="default",
    steps: int | None = None,
    seed: int = 0,
    device=None,
    progress: Callable | None = None,
    **overrides,
) -> tuple[FittedLayers, torch.Tensor]:
    """Full-resolution layers from a base-resolution fit: upscale the removal outputs, then the bootstrapped fit.

    Args:
        base_fit: ``fit_layers`` result on ``solos_base``/``background_base`` (``[N, T, ...]`` at the base size),
            or the ``Layers`` made from it.
        solos_base: ``[N, T, 3, h, w]``; background_base: ``[T, 3, h, w]`` — the removal outputs at the base size.
        video_hr: ``[T, 3, H, W]`` the input video at full resolution (sets the target size).
        masks_hr: ``[N, T, 1, H, W]`` object masks at full resolution.
        resampler, solos_upscaled, background_upscaled: see :func:`upscale_removal_outputs`.
        input_detail: put the input's pixels into each solo where its object alone is visible
            (:func:`solos_with_input_detail`).
        preset, steps, seed, device, progress: passed to :func:`omnimatte_core.fit.fit_layers_full_res`.
        **overrides: ``FitConfig`` fields for the full-resolution fit (e.g. ``preview_every``), passed on too.

    Returns:
        ``(layers, background_hr)`` — the full-resolution :class:`FittedLayers` and the background ``[T,3,H,W]`` they
        were fitted against (the clean plate to composite them over).
    """
    from .fit import FittedLayers, fit_layers_full_res  # fit.py builds on this module's resampling
    from .layers import Layers

    # 1. Check inputs
    if not isinstance(base_fit, (FittedLayers, Layers)):
        raise TypeError(f"base_fit must be the FittedLayers returned by fit_layers (or Layers made from it), "
                        f"got {type(base_fit).__name__}")
    if not isinstance(video_hr, torch.Tensor) or video_hr.ndim != 4 or video_hr.shape[1] != 3:
        raise ValueError(f"video_hr must be [T,3,H,W], got {tuple(getattr(video_hr, 'shape', ()))}")
    t, _, h, w = video_hr.shape
    n = solos_base.shape[0] if isinstance(solos_base, torch.Tensor) and solos_base.ndim == 5 else None
    if not isinstance(masks_hr, torch.Tensor) or masks_hr.ndim != 5 or masks_hr.shape[2] != 1:
        raise ValueError(f"masks_hr must be [N,T,1,H,W], got {tuple(getattr(masks_hr, 'shape', ()))}")
    if tuple(masks_hr.shape[1:]) != (t, 1, h, w) or masks_hr.shape[0] != n:
        raise ValueError(f"masks_hr must be [N,T,1,H,W] = {(n, t, 1, h, w)} (one mask per solo, the input's frames "
                         f"and size), got {tuple(masks_hr.shape)}")
    if solos_base.shape[1] != t:
        raise ValueError(f"solos_base has {solos_base.shape[1]} frames but video_hr has {t}; expected the same count")
    if tuple(base_fit.alpha.shape[:2]) != (n, t) or base_fit.alpha.shape[-2:] != solos_base.shape[-2:]:
        raise ValueError(f"base_fit holds {tuple(base_fit.alpha.shape)} alpha but solos_base is "
                         f"{tuple(solos_base.shape)}; expected the fit of these solos")

    # 2. Upscale the removal outputs, then the input's own pixels where they are certain
    solos_hr, background_hr = upscale_removal_outputs(
        solos_base, background_base, (h, w), resampler=resampler,
        solos_upscaled=solos_upscaled, background_upscaled=background_upscaled)
    if input_detail:
        solos_hr = solos_with_input_detail(solos_hr, video_hr, masks_hr)

    # 3. Bootstrapped full-resolution fit
    layers = fit_layers_full_res(solos_hr, background_hr, masks_hr, base_fit, preset=preset, steps=steps, seed=seed,
                                 device=device, progress=progress, **overrides)
    return layers, background_hr
