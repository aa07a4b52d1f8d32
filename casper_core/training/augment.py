"""Augmentation of training tuples (paper Sec. B): random clips, random crops, keep → neutral label switching.

Every function takes an explicit `numpy.random.Generator`, so an example is a function of its seed alone (resumed
and multi-process runs draw the same examples).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..temporal import pad_frames
from ..trimask import KEEP, NEUTRAL, REMOVE, dilate_masks


def random_clip(num_frames: int, clip_frames: int, rng: np.random.Generator) -> torch.Tensor:
    """Frame indices of a random `clip_frames`-long clip of a `num_frames` video; shorter videos are padded by
    reflection (``0 1 2 2 1 0 0 1 …``, as `casper_core.temporal.pad_frames`) from a random start."""
    if num_frames >= clip_frames:
        start = int(rng.integers(0, num_frames - clip_frames + 1))
        return torch.arange(start, start + clip_frames)
    return pad_frames(torch.arange(num_frames), clip_frames)


def random_crop_box(size: tuple[int, int], crop: tuple[int, int], rng: np.random.Generator
                    ) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Where to crop: ``(resized (H, W), (top, left, height, width))``. A frame smaller than the crop in either
    direction is first resized (keeping its aspect) so that it covers the crop."""
    height, width = size
    scale = max(1.0, crop[0] / height, crop[1] / width)
    resized = (max(crop[0], int(round(height * scale))), max(crop[1], int(round(width * scale))))
    top = int(rng.integers(0, resized[0] - crop[0] + 1))
    left = int(rng.integers(0, resized[1] - crop[1] + 1))
    return resized, (top, left, crop[0], crop[1])


def crop_video(video: torch.Tensor, resized: tuple[int, int], box, mode: str = "bilinear") -> torch.Tensor:
    """Crop ``[T,C,H,W]`` at `box` after resizing to `resized` (when it differs from the size)."""
    if tuple(video.shape[-2:]) != tuple(resized):
        kwargs = {"align_corners": False, "antialias": False} if mode == "bilinear" else {}
        video = F.interpolate(video.float(), size=resized, mode=mode, **kwargs)
    top, left, height, width = box
    return video[..., top:top + height, left:left + width]


def switch_keep_labels(trimask: torch.Tensor, keep_masks: torch.Tensor, probability: float,
                       rng: np.random.Generator) -> tuple[torch.Tensor, int]:
    """Turn each kept object's *keep* label into *neutral* with `probability`, independently per object.

    Args:
        trimask: ``[T,H,W]`` in {0, 0.5, 1}.
        keep_masks: ``[K,T,H,W]`` bool, each kept object's keep region (same frames and crop as `trimask`).

    Returns:
        ``(new trimask, number of objects switched)``. Remove labels are never touched; a pixel stays keep if
        another, unswitched object keeps it.
    """
    switched = [bool(rng.random() < probability) for _ in range(keep_masks.shape[0])]
    if not any(switched):
        return trimask, 0
    still_kept = keep_masks[[not s for s in switched]].any(dim=0) if not all(switched) else torch.zeros_like(trimask, dtype=torch.bool)
    out = trimask.clone()
    out[(trimask == KEEP) & ~still_kept] = NEUTRAL
    return out, sum(switched)


def grow_remove(trimask: torch.Tensor, width: int) -> torch.Tensor:
    """Dilate the *remove* region of ``[T,H,W]`` by a `width` square (over keep and neutral)."""
    if width <= 1:
        return trimask
    out = trimask.clone()
    out[dilate_masks(trimask == REMOVE, width)] = REMOVE
    return out
