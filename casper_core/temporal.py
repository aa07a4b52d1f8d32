"""Frame counts and temporal windows: padding to a latent-friendly length, window planning, multidiffusion ramps.

The CogVideoX VAE maps 4k+1 frames to k+1 latent frames and CogVideoX 1.5 patches latent time by 2, so every
latent window must have an even length. The public reference pads every clip to 4k+1 frames with k odd (an even
latent count), at least one window long, and runs longer clips as overlapping windows (temporal multidiffusion),
blending the stepped latents of each window with linear ramps over the overlaps.
"""
from __future__ import annotations

import torch

TEMPORAL_COMPRESSION = 4


def latent_frames(num_frames: int) -> int:
    """Latent frames of a ``4k+1``-frame video (k+1)."""
    return (num_frames - 1) // TEMPORAL_COMPRESSION + 1


def padded_length(num_frames: int, min_frames: int = 1) -> int:
    """Smallest ``4k+1 ≥ max(num_frames, min_frames)`` with k odd (so the latent count k+1 is even).

    The reference clamps to at least the window length and at most 197 frames (it truncates longer inputs at read
    time); we never truncate, and apply the odd-k rule after the clamp so that any window length gives an even
    latent count (for window lengths of 4k+1 frames with k odd, such as the default 85, both agree).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames: expected ≥ 1, got {num_frames}")
    target = max(num_frames, min_frames)
    k = max(1, -(-(target - 1) // TEMPORAL_COMPRESSION))
    if k % 2 == 0:
        k += 1
    return TEMPORAL_COMPRESSION * k + 1


def symmetric_pad_indices(num_frames: int, target: int) -> torch.Tensor:
    """Frame indices that pad a clip of `num_frames` to `target` frames.

    The running video is extended by its own reverse until long enough, then truncated, so the edge frame is
    repeated: 5 → 21 gives ``0 1 2 3 4 4 3 2 1 0 0 1 2 3 4 4 3 2 1 0 0``.
    """
    if target < num_frames:
        raise ValueError(f"target: {target} frames is shorter than the clip ({num_frames})")
    index = torch.arange(num_frames)
    while index.numel() < target:
        index = torch.cat([index, index.flip(0)])
    return index[:target]


def pad_frames(frames: torch.Tensor, target: int, dim: int = 0) -> torch.Tensor:
    """Pad `frames` along `dim` to `target` frames with `symmetric_pad_indices`."""
    index = symmetric_pad_indices(frames.shape[dim], target).to(frames.device)
    return frames.index_select(dim, index)


def window_latent_frames(window_frames: int, patch_size_t: int = 2) -> int:
    """Latent length of a temporal window of `window_frames` frames.

    As in the reference: a window whose latent count is not a multiple of the temporal patch loses 4 frames
    (85 → 22 latents, 17 → 4, 9 → 2).
    """
    if window_frames < 1:
        raise ValueError(f"window_frames: expected ≥ 1, got {window_frames}")
    count = latent_frames(window_frames)
    if patch_size_t > 1 and count % patch_size_t:
        count = latent_frames(window_frames - TEMPORAL_COMPRESSION)
    if count < max(patch_size_t, 1):
        raise ValueError(f"window_frames: {window_frames} frames give no whole latent window; use ≥ 5")
    return count


def plan_windows(total: int, window: int, overlap: int, multiple: int = 2) -> list[tuple[int, int]]:
    """Latent-frame windows ``[begin, end)`` covering ``[0, total)``.

    Windows of `window` latents, each next one starting `overlap` latents before the previous end (the reference's
    hop is ``window − overlap``); a single window when ``total ≤ window``. Where the last window would have a length
    that is not a multiple of `multiple` (the reference crashes there), it starts earlier until it is.
    """
    if total <= window:
        return [(0, total)]
    if not 0 <= overlap < window:
        raise ValueError(f"overlap: expected 0 ≤ overlap < window ({window} latent frames), got {overlap}")
    windows = []
    begin = 0
    while True:
        end = min(begin + window, total)
        windows.append((begin, end))
        if end >= total:
            break
        begin = end - overlap
    begin, end = windows[-1]
    if (end - begin) % multiple:
        windows[-1] = (begin - (end - begin) % multiple, end)
    return windows


def window_weights(begin: int, end: int, total: int, overlap: int) -> torch.Tensor:
    """Blend weights ``[end − begin]`` (float32) of one window.

    1 everywhere; ``linspace(0, 1, s+2)[1:-1]`` over the first s entries when the window does not start the video,
    then ``linspace(1, 0, s+2)[1:-1]`` over the last s entries when it does not end it — written second, so it
    overwrites the rising ramp where they meet (as the reference does when s > window/2).
    """
    weights = torch.ones(end - begin, dtype=torch.float32)
    s = min(overlap, end - begin)
    if s > 0 and begin > 0:
        weights[:s] = torch.linspace(0, 1, s + 2)[1:-1]
    if s > 0 and end < total:
        weights[-s:] = torch.linspace(1, 0, s + 2)[1:-1]
    return weights


def plan_full_windows(total: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Latent-frame windows ``[begin, end)`` of exactly `window` latents covering ``[0, total)``.

    The Wan2.1-Fun plan of the reference (its Wan pipeline): windows hop by ``window − overlap``; the last one starts
    earlier, so that it ends at the clip's end and still has the full length (it then overlaps its neighbour by more
    than `overlap`; the blend ramps still span `overlap` latents, see `window_weights`). A single window when
    ``total ≤ window``.
    """
    windows = plan_windows(total, window, overlap, multiple=1)
    # The reference's plan differs only in the last window, moved back to its full length.
    _, end = windows[-1]
    windows[-1] = (max(0, end - window), end)
    return windows
