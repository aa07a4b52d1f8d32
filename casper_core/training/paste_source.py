"""Object-Paste tuples (paper Sec. B): an object cut from one clip by its mask and pasted onto another clip.

The input is the host clip with the pasted object, the target the host clip as it was, the trimask marks the pasted
object *remove* and the host's own objects (when their masks are known) *keep*. The pasted object brings no shadow or
reflection, so these tuples teach inpainting and background preservation, not effect removal; the paper keeps them
at 2 % of the examples because more would hinder effect removal.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .tuples import TrainingTuple, make_trimask
from ..temporal import pad_frames


def object_paste_tuple(
    host_video: torch.Tensor,
    donor_video: torch.Tensor,
    donor_mask: torch.Tensor,
    *,
    seed: int,
    host_keep_masks: torch.Tensor | None = None,
    scale_range: tuple[float, float] = (0.6, 1.0),
    dilate: int = 5,
    info: dict | None = None,
) -> TrainingTuple:
    """Paste the masked object of `donor_video` onto `host_video` (category ``"object_paste"``).

    Args:
        host_video: ``[T,H,W,3]`` float 0..1, the clip that receives the object (and the target).
        donor_video: ``[Td,Hd,Wd,3]`` float 0..1, the clip the object is cut from.
        donor_mask: ``[Td,Hd,Wd]`` bool, the object in the donor clip (object only: its effects stay behind).
        seed: fixes the scale, position, mirroring and time offset of the paste.
        host_keep_masks: ``[K,T,H,W]`` bool masks of the host's own objects (labelled keep), or None.
        scale_range: random scale of the object relative to the donor clip resized to the host's size.
        dilate: square dilation of the masks in the trimask, pixels.
        info: extra description stored with the tuple.

    Returns:
        `TrainingTuple`; the pasted object is visible in at least one frame.
    """
    frames, height, width = host_video.shape[:3]
    if donor_video.shape[:3] != donor_mask.shape:
        raise ValueError(f"donor_mask: expected [T,H,W] = {tuple(donor_video.shape[:3])}, got {tuple(donor_mask.shape)}")
    if not bool(donor_mask.any()):
        raise ValueError("donor_mask: empty in every frame; nothing to paste")
    rng = np.random.default_rng([seed, 7])

    # 1. Donor clip at the host's length (a random start, reflective padding) and size, as [T,4,H,W]
    start = int(rng.integers(0, max(1, donor_video.shape[0] - frames + 1)))
    donor = torch.cat([donor_video.float(), donor_mask.float()[..., None]], dim=-1)[start:start + frames]
    donor = pad_frames(donor, frames, dim=0) if donor.shape[0] < frames else donor
    donor = F.interpolate(donor.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=False)

    # 2. One random similarity transform for the whole clip: scale, mirror, move the object's centre somewhere
    #    in the frame (so it always shows, at least partly)
    rows, cols = torch.nonzero(donor[:, 3] > 0.5, as_tuple=True)[1:]
    centre_y, centre_x = rows.float().mean(), cols.float().mean()
    scale = float(rng.uniform(*scale_range))
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    target_y, target_x = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
    theta = torch.zeros(1, 2, 3)
    # grid_sample maps output coordinates to input ones (normalised to -1..1): x_in = (x_out - t) / s + c
    theta[0, 0, 0] = mirror / scale
    theta[0, 1, 1] = 1.0 / scale
    theta[0, 0, 2] = _norm(centre_x, width) - mirror * _norm(target_x, width) / scale
    theta[0, 1, 2] = _norm(centre_y, height) - _norm(target_y, height) / scale
    grid = F.affine_grid(theta.expand(frames, -1, -1), [frames, 4, height, width], align_corners=False)
    pasted = F.grid_sample(donor, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    alpha = pasted[:, 3:4].clamp(0, 1)
    mask = alpha[:, 0] > 0.5
    if not bool(mask.any()):  # the object fell outside the frame: paste it untransformed
        alpha, pasted, mask = donor[:, 3:4], donor, donor[:, 3] > 0.5

    # 3. Input = object over host (soft edge from resampling), target = host
    host = host_video.float().permute(0, 3, 1, 2)
    input_video = alpha * pasted[:, :3].clamp(0, 1) + (1 - alpha) * host
    keeps = host_keep_masks if host_keep_masks is not None else torch.zeros(0, frames, height, width, dtype=torch.bool)
    trimask, keep_masks = make_trimask(mask[None], keeps, dilate)
    description = {"source": "object_paste", "seed": seed, "scale": scale, "mirrored": mirror < 0,
                   "donor_start": start, **(info or {})}
    return TrainingTuple(
        category="object_paste",
        input_video=input_video.permute(0, 2, 3, 1).clamp(0, 1).contiguous(),
        trimask=trimask,
        target_video=host_video.float().clamp(0, 1).contiguous(),
        keep_masks=keep_masks,
        info=description,
    )


def _norm(pixel, size: int) -> float:
    """Pixel coordinate (centre of pixel 0 at 0) → grid_sample's normalised coordinate (align_corners False)."""
    return float((2 * pixel + 1) / size - 1)
