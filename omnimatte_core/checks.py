"""The input checks of the core-level tensors, shared by every stage that takes them.

Videos are ``[T,3,H,W]`` floats in 0..1, object masks ``[N,T,1,H,W]`` (``[N,T,H,W]`` accepted), stacks of layers or
solo videos ``[N,T,C,H,W]``. Each check raises ``TypeError``/``ValueError`` naming the argument, what it got and
what was expected, before any heavy work.
"""
from __future__ import annotations

import torch

__all__ = ["MASK_THRESHOLD", "check_tensor", "check_video", "check_masks", "check_width"]

MASK_THRESHOLD = 0.5
"""A mask value above this counts as the object."""


def check_tensor(name: str, x, shape: tuple, value_range: tuple[float, float] | None = (0.0, 1.0)) -> torch.Tensor:
    """Raise ``ValueError``/``TypeError`` naming ``name`` unless ``x`` is a finite float tensor of ``shape``
    (``None`` entries match any size) with values in ``value_range``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (0..1), got dtype {x.dtype}")
    if x.ndim != len(shape) or any(want is not None and got != want for got, want in zip(x.shape, shape)):
        pretty = "[" + ",".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {pretty}, got {list(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {list(x.shape)})")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if value_range is not None:
        low, high = torch.aminmax(x.detach())
        # a little slack: values 1e-4 outside 0..1 come from bf16/float rounding, not from a wrong convention
        if low.item() < value_range[0] - 1e-4 or high.item() > value_range[1] + 1e-4:
            raise ValueError(f"{name} must hold values in {value_range[0]}..{value_range[1]}, "
                             f"got {low.item():.4g}..{high.item():.4g}")
    return x


def check_video(video, name: str = "video") -> torch.Tensor:
    """``video`` must be a finite float ``[T,3,H,W]`` tensor with at least one frame; returned as given."""
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [T,3,H,W], got {type(video).__name__}")
    if video.ndim != 4 or video.shape[1] != 3 or video.shape[0] < 1:
        raise ValueError(f"{name} must be [T,3,H,W] (RGB frames, 0..1), got {list(video.shape)}")
    if not video.is_floating_point():
        raise ValueError(f"{name} must be floating point in 0..1, got dtype {video.dtype}")
    if not bool(torch.isfinite(video).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return video


def check_masks(masks, video: torch.Tensor, name: str = "masks") -> torch.Tensor:
    """``[N,T,1,H,W]`` or ``[N,T,H,W]`` matching ``video [T,3,H,W]`` → bool ``[N,T,1,H,W]`` on the video's device
    (values above :data:`MASK_THRESHOLD` are the object)."""
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [N,T,1,H,W], got {type(masks).__name__}")
    if masks.ndim == 4:
        masks = masks.unsqueeze(2)
    t, _, h, w = video.shape
    if masks.ndim != 5 or masks.shape[2] != 1 or masks.shape[0] < 1:
        raise ValueError(f"{name} must be [N,T,1,H,W] or [N,T,H,W] (one mask per object), got {list(masks.shape)}")
    if masks.shape[1] != t:
        raise ValueError(f"{name} has {masks.shape[1]} frames but the video has {t}; expected one mask per frame")
    if tuple(masks.shape[3:]) != (h, w):
        raise ValueError(f"{name} are {masks.shape[3]}x{masks.shape[4]} (HxW) but the video is {h}x{w}; "
                         "resize the masks to the video size")
    return (masks.to(video.device) > MASK_THRESHOLD)


def check_width(value, name: str) -> int:
    """A width in pixels: an integer ``>= 0`` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a width in pixels >= 0, got {value!r}")
    return value
