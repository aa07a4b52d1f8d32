"""Reading videos and object masks from files: video files via PyAV, image folders via OpenCV.

Core layout: a video is ``[T, 3, H, W]`` float32 in 0..1, a mask stack ``[N, T, 1, H, W]`` float32 in {0, 1}.

Accepted sources:
- a video file (``.mp4 .mov .webm .mkv .avi .m4v .gif``), decoded with PyAV;
- a folder of frames (``.png .jpg .jpeg .webp .bmp .tif .tiff``), sorted by the numbers in their names
  (``frame_2.png`` before ``frame_10.png``).

Masks come either as one file/folder per object (binarised at 0.5) or as one *label map* where each object has its
own grey value (``read_label_map`` splits it into one mask per value; ``find_label_values`` finds the values,
robust to lossy codecs).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

__all__ = ["VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS", "read_video", "read_masks", "read_label_map", "list_frames",
           "find_label_values", "split_label_levels", "LabelLevels", "LabelSplit"]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
DEFAULT_FOLDER_FPS = 24.0
"""Frame rate reported for image folders, which carry none."""


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _existing(path, name: str) -> Path:
    if not isinstance(path, (str, Path)):
        raise TypeError(f"{name} must be a path (str or pathlib.Path), got {type(path).__name__}")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file or folder: {str(path)!r}")
    return path


def list_frames(folder, name: str = "folder") -> list[Path]:
    """The image files of ``folder`` in natural order; ``ValueError`` when it holds none."""
    folder = _existing(folder, name)
    if not folder.is_dir():
        raise ValueError(f"{name} must be a folder of frames, got the file {str(folder)!r}")
    frames = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                    key=_natural_key)
    if not frames:
        raise ValueError(f"{name}: the folder {str(folder)!r} holds no image frames "
                         f"(expected files ending in {', '.join(IMAGE_EXTENSIONS)})")
    return frames


def _to_unit_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(image.astype(np.float32), 0.0, 1.0)
    raise ValueError(f"unsupported image sample type {image.dtype}; expected 8- or 16-bit images")


def _read_image(path: Path, mode: str) -> np.ndarray:
    """One image as float32 0..1: ``mode="rgb"`` → ``[H,W,3]``, ``mode="gray"`` → ``[H,W]``.

    For grey reads, an image with a non-constant alpha channel yields its alpha (masks saved as transparent PNGs)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"could not read the image {str(path)!r} (unsupported or corrupt file)")
    image = _to_unit_float(image)
    if image.ndim == 2:
        return image if mode == "gray" else np.repeat(image[..., None], 3, axis=2)
    channels = image.shape[2]
    if mode == "gray":
        if channels == 4 and image[..., 3].min() < image[..., 3].max():
            return image[..., 3]
        return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY) if channels >= 3 else image[..., 0]
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)


def _decode_file(path: Path, mode: str, max_frames: int | None) -> tuple[list[np.ndarray], float]:
    import av  # PyAV; imported here so reading image folders never needs it

    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{str(path)!r} holds no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else DEFAULT_FOLDER_FPS
            for frame in container.decode(stream):
                if mode == "gray":
                    frames.append(frame.to_ndarray(format="gray").astype(np.float32) / 255.0)
                else:
                    frames.append(frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0)
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.error.FFmpegError as error:
        raise ValueError(f"could not decode the video {str(path)!r}: {error}") from error
    if not frames:
        raise ValueError(f"the video {str(path)!r} has no frames")
    return frames, fps


def _read_frames(path, name: str, mode: str, max_frames: int | None, fps: float | None):
    path = _existing(path, name)
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    if path.is_dir():
        files = list_frames(path, name)
        if max_frames is not None:
            files = files[:max_frames]
        frames = [_read_image(p, mode) for p in files]
        sizes = {f.shape[:2] for f in frames}
        if len(sizes) > 1:
            raise ValueError(f"{name}: the frames in {str(path)!r} differ in size {sorted(sizes)}; "
                             "expected one size for all frames")
        frame_rate = float(fps) if fps is not None else DEFAULT_FOLDER_FPS
    else:
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            frames, frame_rate = [_read_image(path, mode)], float(fps or DEFAULT_FOLDER_FPS)
        elif path.suffix.lower() in VIDEO_EXTENSIONS:
            frames, frame_rate = _decode_file(path, mode, max_frames)
        else:
            raise ValueError(f"{name}: {str(path)!r} is neither a video ({', '.join(VIDEO_EXTENSIONS)}) nor a folder "
                             "of image frames")
    return np.stack(frames), frame_rate


def read_video(path, *, max_frames: int | None = None, fps: float | None = None) -> tuple[torch.Tensor, float]:
    """Read a video file or a folder of frames.

    Args:
        path: a video file or a folder of PNG/JPG frames.
        max_frames: read at most this many frames (from the start).
        fps: frame rate to report for an image folder (default 24); ignored for video files, which carry theirs.

    Returns:
        ``(video, fps)`` — ``video`` is ``[T, 3, H, W]`` float32 in 0..1.
    """
    frames, frame_rate = _read_frames(path, "video", "rgb", max_frames, fps)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), frame_rate


def _check_against(masks: torch.Tensor, name: str, num_frames: int | None, size: tuple[int, int] | None) -> None:
    t, _, h, w = masks.shape[-4:]
    if num_frames is not None and t != num_frames:
        raise ValueError(f"{name} has {t} frames but the video has {num_frames}; expected the same frame count")
    if size is not None and (h, w) != tuple(size):
        raise ValueError(f"{name} is {h}×{w} (H×W) but the video is {size[0]}×{size[1]}; expected the same size")


def read_masks(paths: Sequence, *, num_frames: int | None = None, size: tuple[int, int] | None = None,
               threshold: float = 0.5, max_frames: int | None = None) -> torch.Tensor:
    """Read one mask video (file or frame folder) per object.

    Args:
        paths: one path per object.
        num_frames, size: when given (the video's frame count and ``(H, W)``), each mask must match them.
        threshold: grey level (0..1) above which a pixel belongs to the object.
        max_frames: read at most this many frames of each mask (as ``read_video(..., max_frames)``).

    Returns:
        ``[N, T, 1, H, W]`` float32 in {0, 1}.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if len(paths) == 0:
        raise ValueError("masks: expected at least one mask file or folder, got none")
    stacks = []
    for index, path in enumerate(paths):
        name = f"masks[{index}] ({Path(path).name})" if isinstance(path, (str, Path)) else f"masks[{index}]"
        frames, _ = _read_frames(path, name, "gray", max_frames, None)
        mask = torch.from_numpy(frames > threshold).float().unsqueeze(1)
        _check_against(mask, name, num_frames, size)
        if stacks and mask.shape != stacks[0].shape:
            raise ValueError(f"{name} has shape [T,1,H,W] = {tuple(mask.shape)} but masks[0] has "
                             f"{tuple(stacks[0].shape)}; expected all masks to match")
        if not bool(mask.any()):
            warnings.warn(f"{name} is empty in every frame", stacklevel=2)
        stacks.append(mask)
    return torch.stack(stacks)


LABEL_MIN_GAP = 16
"""Least distance (0..255 levels) between two labels of a lossy label map: a codec smears each label over a few
neighbouring levels, so a histogram peak within this distance of a larger one is that larger label's smear."""
MIN_SHARE = 1e-4
"""Default least share of all pixels (all frames) a label must hold to count as an object."""
INTERIOR_SHARE = 0.1
"""In a lossy label map, least share of a label's pixels whose four neighbours carry the same label. Codec ringing
puts intermediate levels in thin bands along edges (no interior at all), while an object, even an 8×8 one, is
mostly interior. (A lossy label one or two pixels wide is dropped: list its value explicitly.)"""
RAMP_SHARE = 0.02
"""A label map is taken as lossy when more than this share of its edge pixels lie strictly between their two
neighbours (a ramp), in both the row and the column direction. Lossless label maps step from one label straight to
the next, so they have none; codec ringing, blur and anti-aliasing make ramps at 10-40 % of the edge pixels."""
RAMP_FRAMES = 16
"""Frames (evenly spaced) the ramp test looks at."""
_CHUNK_FRAMES = 16


@dataclass(frozen=True)
class LabelLevels:
    """What ``find_label_values`` found in a label map.

    Attributes:
        values: grey levels (0..255) of the objects, ascending.
        background: the level of the background (the dominant peak near 0; 0 when nothing is near 0).
        lossy: whether the map looks smeared by a lossy codec, blur or anti-aliasing (labels are then histogram
            peaks, not exact levels).
    """
    values: list[int]
    background: int
    lossy: bool


@dataclass(frozen=True)
class LabelSplit:
    """One mask per object of a label map (``split_label_levels``).

    Attributes:
        masks: ``[N, *levels.shape]`` bool, one per object, in the order of ``values``.
        values: the grey level (0..255) of each object.
        background: the background level.
        tolerance: levels either side of a label that still counted as it.
        lossy: see ``LabelLevels.lossy``.
    """
    masks: torch.Tensor
    values: list[int]
    background: int
    tolerance: int
    lossy: bool


def _as_levels(levels) -> torch.Tensor:
    """Integer grey levels 0..255 of any shape (numpy or torch) → a uint8 CPU tensor."""
    levels = torch.as_tensor(levels).detach().cpu()
    if levels.is_floating_point() or levels.is_complex() or levels.dtype == torch.bool:
        raise TypeError(f"label levels must be integers 0..255, got {levels.dtype}; round 0..1 images with "
                        "(image * 255).round() first")
    if levels.numel() == 0:
        raise ValueError("the label map is empty (no pixels)")
    if levels.dtype != torch.uint8:
        low, high = int(levels.min()), int(levels.max())
        if low < 0 or high > 255:
            raise ValueError(f"label levels must lie in 0..255, got {low}..{high}")
        levels = levels.to(torch.uint8)
    return levels


def _frames(levels: torch.Tensor) -> torch.Tensor:
    """``[..., H, W]`` → ``[F, H, W]`` (a single row or column counts as one frame)."""
    return levels.reshape(-1, *levels.shape[-2:]) if levels.ndim >= 2 else levels.reshape(1, 1, -1)


def _ramp_share(frames: torch.Tensor, dim: int) -> float:
    """Share of the edge pixels (a neighbour differs along ``dim``) that lie strictly between both neighbours."""
    length = frames.shape[dim]
    before, centre, after = (frames.narrow(dim, i, length - 2) for i in range(3))
    rise, next_rise = centre - before, after - centre
    edges = int(((rise != 0) | (next_rise != 0)).sum())
    return int((rise * next_rise > 0).sum()) / edges if edges else 0.0


def _looks_lossy(levels: torch.Tensor) -> bool:
    """Whether a label map was smeared by a lossy codec, blur or anti-aliasing: see ``RAMP_SHARE``."""
    frames = _frames(levels)
    if min(frames.shape[-2:]) < 3:
        return False
    if frames.shape[0] > RAMP_FRAMES:
        frames = frames[torch.linspace(0, frames.shape[0] - 1, RAMP_FRAMES).round().long()]
    frames = frames.to(torch.int16)
    # both directions: a lossless label one pixel wide between two others is a ramp across it, not along it
    return min(_ramp_share(frames, -1), _ramp_share(frames, -2)) > RAMP_SHARE


def _histogram(levels: torch.Tensor) -> torch.Tensor:
    flat = levels.flatten()
    step = 1 << 26  # bounded memory for long clips
    return sum(torch.bincount(flat[i:i + step], minlength=256) for i in range(0, flat.numel(), step)).double()


def _ranges(candidates: list[int], tolerance: int) -> list[tuple[int, int]]:
    """The levels ``[low, high]`` each (ascending) candidate takes: the nearest candidate within ``tolerance``, ties
    to the lower one. (``low > high`` when a candidate takes no level.)"""
    ranges = []
    for i, c in enumerate(candidates):
        low = max(c - tolerance, (candidates[i - 1] + c) // 2 + 1 if i else 0)
        high = min(c + tolerance, (c + candidates[i + 1]) // 2 if i + 1 < len(candidates) else 255)
        ranges.append((low, high))
    return ranges


def _auto_tolerance(candidates: list[int], lossy: bool) -> int:
    """0 for a lossless map; else half the smallest gap: the smear between two labels is split at the midpoint."""
    if not lossy:
        return 0
    gaps = [b - a for a, b in zip(candidates, candidates[1:])]
    return min(gaps) // 2 if gaps else 255


def _interior_shares(levels: torch.Tensor, candidates: list[int], tolerance: int) -> list[float]:
    """For each candidate, the share of its pixels whose four neighbours take the same candidate."""
    frames = _frames(levels)
    ranges = _ranges(candidates, tolerance)
    inner = [0] * len(candidates)
    total = [0] * len(candidates)
    for start in range(0, frames.shape[0], _CHUNK_FRAMES):
        chunk = frames[start:start + _CHUNK_FRAMES]
        for i, (low, high) in enumerate(ranges):
            m = (chunk >= low) & (chunk <= high)
            total[i] += int(m.sum())
            if m.shape[-1] >= 3 and m.shape[-2] >= 3:
                core = (m[:, 1:-1, 1:-1] & m[:, :-2, 1:-1] & m[:, 2:, 1:-1] & m[:, 1:-1, :-2] & m[:, 1:-1, 2:])
                inner[i] += int(core.sum())
    return [n / t if t else 0.0 for n, t in zip(inner, total)]


def find_label_values(levels, *, min_share: float = MIN_SHARE) -> LabelLevels:
    """Find the object labels of a label map (one grey value per object, background near 0).

    The one label finder of the pack: the Masks from Label Map node, ``read_label_map`` and the demo CLI use it. It
    works on the histogram of all pixels of all frames:

    - *lossless* maps (PNG frames, lossless video: labels meet without intermediate levels, see ``RAMP_SHARE``):
      every level > 0 holding at least ``min_share`` of the pixels is a label, so dense labels 1, 2, 3 work;
    - *lossy* maps (an mp4, a JPG folder, a blurred or resized map): a codec smears each label over nearby levels,
      turns some black pixels into 1, 2, 3 and fills the levels between labels with edge ringing. A label is then a
      histogram peak (the largest count within ``LABEL_MIN_GAP - 1`` levels either side) whose neighbourhood
      (± ``LABEL_MIN_GAP // 2`` levels) holds at least ``min_share`` of the pixels and whose pixels form areas, not
      thin edge bands (``INTERIOR_SHARE``). The lowest peak, when below ``LABEL_MIN_GAP``, is the background.

    Args:
        levels: integer grey levels 0..255 (any shape, e.g. ``[T, H, W]``), numpy or torch.
        min_share: least share of all pixels a label must hold.
    """
    levels = _as_levels(levels)
    if not 0 <= min_share < 1:
        raise ValueError(f"min_share must be a share of the pixels in [0, 1), got {min_share!r}")
    hist = _histogram(levels)
    needed = min_share * float(hist.sum())
    occupied = torch.nonzero(hist).flatten().tolist()
    if not _looks_lossy(levels):
        return LabelLevels(values=[v for v in occupied if v > 0 and hist[v] >= needed], background=0, lossy=False)
    reach, half = LABEL_MIN_GAP - 1, LABEL_MIN_GAP // 2
    peaks = []
    for v in occupied:
        count = hist[v]
        if bool((hist[max(0, v - reach):v] >= count).any()) or bool((hist[v + 1:v + reach + 1] > count).any()):
            continue  # not the largest count within reach (ties go to the lower level)
        if float(hist[max(0, v - half):v + half + 1].sum()) >= needed:
            peaks.append(v)
    background = peaks.pop(0) if peaks and peaks[0] < LABEL_MIN_GAP else 0
    if peaks:
        candidates = [background, *peaks]
        shares = _interior_shares(levels, candidates, _auto_tolerance(candidates, True))[1:]
        peaks = [v for v, share in zip(peaks, shares) if share >= INTERIOR_SHARE]
    return LabelLevels(values=peaks, background=background, lossy=True)


def split_label_levels(levels, values: Sequence[int] | None = None, *, tolerance: int | None = None,
                       min_share: float = MIN_SHARE, name: str = "label_map") -> LabelSplit:
    """Split a label map into one mask per object: every pixel goes to the nearest label within ``tolerance``.

    The labels are found by ``find_label_values``. The background and every found label take part in the
    nearest-label choice even when ``values`` lists only some objects, so one object's pixels never leak into
    another's mask.

    Args:
        levels: integer grey levels 0..255 (any shape, e.g. ``[T, H, W]``), numpy or torch.
        values: the objects' levels (1..255) in the order wanted; default: all found labels, ascending.
        tolerance: levels either side of a label that still count as it; default (None) 0 for a lossless map and
            half the smallest gap between labels (background included) for a lossy one, which splits the smear
            between two labels at the midpoint.
        min_share: passed to ``find_label_values``.
        name: how errors name the label map.

    Returns:
        a ``LabelSplit`` (masks ``[N, *levels.shape]`` bool).
    """
    levels = _as_levels(levels)
    found = find_label_values(levels, min_share=min_share)
    if values is None:
        chosen = list(found.values)
        if not chosen:
            raise ValueError(f"{name} has no object labels (every pixel is background, near 0); expected one grey "
                             "value per object, e.g. 1, 2, 3 (lossless) or 85, 170, 255")
    else:
        chosen = [int(v) for v in values]
        if not chosen:
            raise ValueError(f"{name}: values lists no object; expected at least one level in 1..255")
        bad = [v for v in chosen if not 1 <= v <= 255]
        if bad:
            raise ValueError(f"values must be grey levels in 1..255 (0 is background), got {bad}")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"values lists a level twice: {chosen}; expected one level per object")
    near = LABEL_MIN_GAP if found.lossy else 1  # a found label this close to a chosen one is the same label
    others = [v for v in [found.background, *found.values] if all(abs(v - c) >= near for c in chosen)]
    candidates = sorted(set(chosen) | set(others))
    if tolerance is None:
        tolerance = _auto_tolerance(candidates, found.lossy)
    else:
        tolerance = int(tolerance)
        if tolerance < 0:
            raise ValueError(f"tolerance must be 0 or more grey levels (or None for automatic), got {tolerance}")
        if tolerance == 0 and found.lossy:
            warnings.warn(f"{name} looks lossy (its labels are smeared over nearby levels) but tolerance is 0, so "
                          "only pixels exactly at a label level count: leave tolerance automatic for whole masks",
                          stacklevel=2)
    ranges = dict(zip(candidates, _ranges(candidates, tolerance)))
    masks = torch.stack([(levels >= ranges[v][0]) & (levels <= ranges[v][1]) for v in chosen])
    empty = [v for v, m in zip(chosen, masks) if not bool(m.any())]
    if empty:
        raise ValueError(f"{name} has no pixel with value(s) {empty} (within {tolerance} levels); expected every "
                         f"listed value to occur (found labels: {found.values or 'none'}, on a 0..255 scale)")
    return LabelSplit(masks=masks, values=chosen, background=found.background, tolerance=tolerance,
                      lossy=found.lossy)


def read_label_map(path, *, values: Sequence[int] | None = None, num_frames: int | None = None,
                   size: tuple[int, int] | None = None, tolerance: int | None = None,
                   min_share: float = MIN_SHARE, max_frames: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """Split a label-map video (one grey value per object, 0 = background) into one mask per object.

    Args:
        path: a video file or a frame folder.
        values: the grey levels (0..255) of the objects, in object order; default: found by ``find_label_values``
            (ascending). Lossless frames (PNG folders) may use any levels >= 1, e.g. 1, 2, 3; lossy ones (mp4, JPG)
            need labels at least ``LABEL_MIN_GAP`` apart, e.g. 85, 170, 255.
        num_frames, size: when given, the label map must match them.
        tolerance: grey levels either side of a value that still count as it; default automatic
            (see ``split_label_levels``).
        min_share: least share of all pixels a found level must hold (see ``find_label_values``).
        max_frames: read at most this many frames.

    Returns:
        ``(masks, values)`` — ``masks`` ``[N, T, 1, H, W]`` float32 in {0, 1}, ``values`` the grey level of each.
    """
    source = _existing(path, "label_map")
    frames, _ = _read_frames(source, "label_map", "gray", max_frames, None)
    grey = torch.from_numpy(np.rint(frames * 255.0).astype(np.uint8))
    _check_against(grey.unsqueeze(1), "label_map", num_frames, size)
    split = split_label_levels(grey, values, tolerance=tolerance, min_share=min_share,
                               name=f"label_map {str(source)!r}")
    return split.masks.float().unsqueeze(2), split.values
