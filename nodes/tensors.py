"""Converting between ComfyUI's tensors and the cores' layouts, with errors that say what to fix.

ComfyUI: IMAGE ``[B,H,W,C]`` float 0..1 (C = 3, or 4 for RGBA), MASK ``[B,H,W]`` float 0..1 (B frames).
Cores: videos ``[T,C,H,W]``, per-object stacks ``[N,T,C,H,W]``.

Several objects travel in one ComfyUI batch **object-major**: all T frames of object 1, then all T frames of
object 2, … (``B = N·T``). A segmenter's MASK of one object is therefore already a valid one-object batch, and
core nodes that batch or split images keep working on it.
"""
from __future__ import annotations

import torch


def _check_image(image, name: str) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name} must be an IMAGE [frames,H,W,3], got "
                         f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")
    if image.shape[0] == 0:
        raise ValueError(f"{name} has no frames")
    return image


def image_to_video(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """IMAGE ``[T,H,W,C]`` → a fresh float32 ``[T,3,H,W]`` (RGBA drops alpha, grey is repeated)."""
    image = _check_image(image, name).detach().float()
    if image.shape[-1] == 1:
        image = image.expand(*image.shape[:3], 3)
    return image[..., :3].permute(0, 3, 1, 2).contiguous().clamp(0.0, 1.0)


def video_to_image(video: torch.Tensor) -> torch.Tensor:
    """``[T,C,H,W]`` → IMAGE ``[T,H,W,C]`` float32 on the CPU."""
    return video.detach().float().permute(0, 2, 3, 1).contiguous().cpu().clamp(0.0, 1.0)


def mask_to_video(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """MASK ``[B,H,W]`` (or ``[H,W]``) → ``[B,1,H,W]`` float32."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
        raise ValueError(f"{name} must be a MASK [frames,H,W], got "
                         f"{tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}")
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    return mask.detach().float().unsqueeze(1).contiguous().clamp(0.0, 1.0)


def split_objects(batch: torch.Tensor, frames: int, name: str) -> torch.Tensor:
    """An object-major batch ``[N·T, ...]`` → ``[N, T, ...]``; ``ValueError`` if ``B`` is not a multiple of ``frames``."""
    b = batch.shape[0]
    if frames < 1 or b == 0 or b % frames != 0:
        raise ValueError(f"{name} has {b} frames, which is not a whole number of objects × {frames} video frames; "
                         f"give every object a mask for each of the {frames} frames (use Combine Object Masks)")
    return batch.reshape(b // frames, frames, *batch.shape[1:])


def object_masks(mask: torch.Tensor, frames: int, size: tuple[int, int], name: str = "masks") -> torch.Tensor:
    """MASK batch of N objects × T frames (object-major) → ``[N,T,1,H,W]``, checked against the video.

    A single-frame mask per object (``B = N`` with ``frames > 1``) is not accepted: masks must follow the objects.
    """
    masks = mask_to_video(mask, name)
    if tuple(masks.shape[-2:]) != tuple(size):
        raise ValueError(f"{name} are {masks.shape[-1]}×{masks.shape[-2]} (W×H) but the video is {size[1]}×{size[0]}; "
                         "resize the masks to the video (core 'Upscale Image' via 'Convert Mask to Image') or "
                         "segment the same video")
    stack = split_objects(masks, frames, name)
    empty = [i + 1 for i in range(stack.shape[0]) if float(stack[i].max()) <= 0.5]
    if empty:
        raise ValueError(f"{name}: object(s) {empty} are empty in every frame (no mask value > 0.5); "
                         "check the segmenter output or remove that object")
    return stack


def stack_to_image(stack: torch.Tensor) -> torch.Tensor:
    """``[N,T,C,H,W]`` → object-major IMAGE ``[N·T,H,W,C]``."""
    return video_to_image(stack.flatten(0, 1))


def stack_to_mask(stack: torch.Tensor) -> torch.Tensor:
    """``[N,T,1,H,W]`` → object-major MASK ``[N·T,H,W]``."""
    return stack.detach().float().flatten(0, 1)[:, 0].contiguous().cpu().clamp(0.0, 1.0)

