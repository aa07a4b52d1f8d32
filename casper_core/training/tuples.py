"""The training tuple: what Casper sees (input video + trimask) and what it should produce (target video).

Conventions (as everywhere in `casper_core`): videos ``[T,H,W,3]`` float32 in 0..1; trimasks ``[T,H,W]`` in
{0 keep, 0.5 neutral, 1 remove}. ``keep_masks [K,T,H,W]`` bool hold, per kept object, the pixels whose keep label
belongs to it, so label switching (`casper_core.training.augment.switch_keep_labels`) can turn one kept object's
label to neutral at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..trimask import KEEP, NEUTRAL, REMOVE, dilate_masks
from .config import CATEGORIES


@dataclass
class TrainingTuple:
    """One example for Casper fine-tuning.

    Attributes:
        category: one of `casper_core.training.config.CATEGORIES`.
        input_video: ``[T,H,W,3]`` float32 0..1, what the model is given.
        trimask: ``[T,H,W]`` float32 in {0, 0.5, 1} (keep, neutral, remove).
        target_video: ``[T,H,W,3]`` float32 0..1, the input without the removed objects and their effects.
        keep_masks: ``[K,T,H,W]`` bool, the keep region of each kept object (K may be 0).
        info: JSON-serialisable description (source, seeds, object names, ...), stored beside the tensors.
    """

    category: str
    input_video: torch.Tensor
    trimask: torch.Tensor
    target_video: torch.Tensor
    keep_masks: torch.Tensor
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.category not in CATEGORIES:
            raise ValueError(f"category: expected one of {CATEGORIES}, got {self.category!r}")
        video = self.input_video
        if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] < 1:
            raise ValueError(f"input_video: expected [T,H,W,3], got {_shape(video)}")
        frames, height, width = video.shape[:3]
        if _shape(self.target_video) != tuple(video.shape):
            raise ValueError(f"target_video: expected {tuple(video.shape)} like input_video, got "
                             f"{_shape(self.target_video)}")
        if _shape(self.trimask) != (frames, height, width):
            raise ValueError(f"trimask: expected [T,H,W] = {(frames, height, width)}, got {_shape(self.trimask)}")
        if not isinstance(self.keep_masks, torch.Tensor) or self.keep_masks.ndim != 4 or \
                tuple(self.keep_masks.shape[1:]) != (frames, height, width):
            raise ValueError(f"keep_masks: expected [K,{frames},{height},{width}], got {_shape(self.keep_masks)}")
        for name in ("input_video", "target_video"):
            values = getattr(self, name)
            if not values.is_floating_point() or float(values.min()) < 0 or float(values.max()) > 1:
                raise ValueError(f"{name}: expected float values in 0..1")
        levels = torch.unique(self.trimask).tolist()
        if any(value not in (KEEP, NEUTRAL, REMOVE) for value in levels):
            raise ValueError(f"trimask: expected values in {{0, 0.5, 1}}, got {levels[:6]}")
        self.keep_masks = self.keep_masks.bool()

    @property
    def num_frames(self) -> int:
        return int(self.input_video.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.input_video.shape[1]), int(self.input_video.shape[2])


def make_trimask(remove_masks: torch.Tensor, keep_masks: torch.Tensor, dilate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Trimask from object masks, as `casper_core.trimask.build_trimask_jobs` makes them at inference.

    Args:
        remove_masks: ``[R,T,H,W]`` bool, objects to remove (R may be 0).
        keep_masks: ``[K,T,H,W]`` bool, objects to keep (K may be 0).
        dilate: square dilation width in pixels applied to every mask (0: none).

    Returns:
        ``(trimask [T,H,W] in {0, 0.5, 1}, dilated keep masks [K,T,H,W] bool)``; remove wins where dilated masks
        overlap, as at inference.
    """
    shape = remove_masks.shape[1:] if remove_masks.shape[0] else keep_masks.shape[1:]
    remove = dilate_masks(remove_masks.bool(), dilate).any(dim=0) if remove_masks.shape[0] else torch.zeros(shape, dtype=torch.bool)
    keeps = dilate_masks(keep_masks.bool(), dilate) if keep_masks.shape[0] else keep_masks.bool()
    trimask = torch.full(tuple(shape), NEUTRAL)
    if keeps.shape[0]:
        trimask[keeps.any(dim=0)] = KEEP
    trimask[remove] = REMOVE
    return trimask, keeps


def _shape(value):
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
