"""Reading videos and object masks from files: video files via PyAV, image folders via OpenCV.

Core layout: a video is ``[T, 3, H, W]`` float32 in 0..1, a mask stack ``[N, T, 1, H, W]`` float32 in {0, 1}.

Accepted sources:
- a video file (``.mp4 .mov .webm .mkv .avi .m4v .gif``), decoded with PyAV;
- a folder of frames (``.png .jpg .jpeg .webp .bmp .tif .tiff``), sorted by the numbers in their names
  (``frame_2.png`` before ``frame_10.png``).

Masks come either as one file/folder per object (binarised at 0.5) or as one *label map* where each object has its
own grey value (``read_label_map`` splits it into one mask per value).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

__all__ = ["VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS", "read_video", "read_masks", "read_label_map", "list_frames"]

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


def _label_values(grey: np.ndarray, tolerance: int, min_share: float) -> list[int]:
    """Grey levels (0..255) that label objects: histogram peaks away from 0 holding at least ``min_share`` of pixels.

    Peaks rather than unique values, because lossy video codecs smear every label over a few neighbouring levels."""
    hist = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    values = []
    for level in range(tolerance + 1, 256):
        window = hist[max(0, level - tolerance): level + tolerance + 1]
        mass = window.sum()
        if hist[level] == window.max() and hist[level] > 0 and mass >= min_share * grey.size:
            if not values or level - values[-1] > tolerance:
                values.append(level)
    return values


def read_label_map(path, *, values: Sequence[int] | None = None, num_frames: int | None = None,
                   size: tuple[int, int] | None = None, tolerance: int | None = None,
                   min_share: float = 1e-4, max_frames: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """Split a label-map video (one grey value per object, 0 = background) into one mask per object.

    Args:
        path: a video file or a frame folder.
        values: the grey levels (0..255) of the objects, in object order; default: found from the histogram
            (ascending). Lossless frames (PNG folders) may use any levels ≥ 1, e.g. 1, 2, 3.
        num_frames, size: when given, the label map must match them.
        tolerance: grey levels either side of a value that still count as it (lossy codecs blur labels);
            default 0 for image folders and 12 for video files.
        min_share: least share of all pixels a found level must hold to count as an object (ignores codec noise).
        max_frames: read at most this many frames.

    Returns:
        ``(masks, values)`` — ``masks`` ``[N, T, 1, H, W]`` float32 in {0, 1}, ``values`` the grey level of each.
    """
    source = _existing(path, "label_map")
    frames, _ = _read_frames(source, "label_map", "gray", max_frames, None)
    grey = np.rint(frames * 255.0).astype(np.int16)
    if tolerance is None:
        tolerance = 0 if source.is_dir() or source.suffix.lower() in IMAGE_EXTENSIONS else 12
    if values is None:
        if tolerance == 0:
            found = [int(v) for v in np.unique(grey) if v > 0
                     and (grey == v).sum() >= min_share * grey.size]
        else:
            found = _label_values(grey.astype(np.uint8), tolerance, min_share)
        values = found
    values = [int(v) for v in values]
    if not values:
        raise ValueError(f"label_map {str(source)!r} has no object labels (every pixel is background, 0); "
                         "expected one grey value per object")
    for v in values:
        if not 1 <= v <= 255:
            raise ValueError(f"values must be grey levels in 1..255 (0 is background), got {v}")
    masks = torch.stack([torch.from_numpy(np.abs(grey - v) <= tolerance).float().unsqueeze(1) for v in values])
    _check_against(masks[0], "label_map", num_frames, size)
    for v, m in zip(values, masks):
        if not bool(m.any()):
            raise ValueError(f"label_map has no pixel with value {v}; expected every listed value to occur")
    return masks, values
