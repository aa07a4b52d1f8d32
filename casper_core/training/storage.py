"""On-disk layout of a training set: one folder per tuple, 8-bit lossless arrays and a JSON manifest.

::

    <root>/dataset.json                 {"format": "casper-training-tuples", "version": 1,
                                         "tuples": [{"folder", "category", "frames", "height", "width"}, ...]}
    <root>/tuples/000000_synthetic/
        arrays.npz                      compressed numpy arrays:
                                          input   [T,H,W,3] uint8   the video Casper is given
                                          target  [T,H,W,3] uint8   the same video without the removed objects
                                          trimask [T,H,W]   uint8   file convention: 255 keep, 128 neutral, 0 remove
                                          keep_masks [K,T,H,W] bool per kept object, its keep region
        info.json                       category, frames, size and where the tuple came from (seeds, files, objects)

The trimask uses the trimask-file convention (white keep, grey neutral, black remove), so ``trimask`` reads back
with `casper_core.trimask.TrimaskJobs.from_trimask_video` like any trimask video. 8-bit storage is lossless for
8-bit sources and quantises synthetic ones by at most half a level. A root is created by `create_dataset_root`
and never reused: writing into an existing folder is refused.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..trimask import KEEP, REMOVE
from .config import CATEGORIES
from .tuples import TrainingTuple

FORMAT = "casper-training-tuples"
VERSION = 1
MANIFEST = "dataset.json"
ARRAYS = "arrays.npz"
INFO = "info.json"
# Trimask file levels (the reference's trimask videos: white keep, grey neutral, black remove).
FILE_KEEP, FILE_NEUTRAL, FILE_REMOVE = 255, 128, 0


def create_dataset_root(root) -> Path:
    """Create a new, empty training-set folder with an empty manifest; refuses a path that exists."""
    root = Path(root)
    if root.exists():
        raise FileExistsError(f"output folder {root} already exists; training sets are written into a new folder")
    (root / "tuples").mkdir(parents=True)
    _write_manifest(root, [])
    return root


def append_tuple(root, example: TrainingTuple) -> Path:
    """Write `example` as the next tuple folder of `root` and list it in the manifest; returns the folder."""
    root = Path(root)
    entries = read_manifest(root)
    folder = root / "tuples" / f"{len(entries):06d}_{example.category}"
    folder.mkdir(parents=False, exist_ok=False)
    np.savez_compressed(
        folder / ARRAYS,
        input=to_uint8(example.input_video),
        target=to_uint8(example.target_video),
        trimask=trimask_to_file(example.trimask),
        keep_masks=example.keep_masks.numpy().astype(bool),
    )
    frames, (height, width) = example.num_frames, example.size
    info = {"category": example.category, "frames": frames, "height": height, "width": width, **example.info}
    (folder / INFO).write_text(json.dumps(info, indent=1) + "\n")
    entries.append({"folder": folder.relative_to(root).as_posix(), "category": example.category,
                    "frames": frames, "height": height, "width": width})
    _write_manifest(root, entries)
    return folder


def read_manifest(root) -> list[dict]:
    """The tuple entries listed in ``<root>/dataset.json``."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{root}: no {MANIFEST}; expected a folder written by "
                                "`python -m casper_core.training.synthesize`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    entries = manifest["tuples"]
    bad = [entry["category"] for entry in entries if entry["category"] not in CATEGORIES]
    if bad:
        raise ValueError(f"{path}: unknown categories {sorted(set(bad))}; expected {CATEGORIES}")
    return entries


def read_tuple(folder) -> TrainingTuple:
    """Read one tuple folder back as a `TrainingTuple` (float videos in 0..1, trimask in {0, 0.5, 1})."""
    folder = Path(folder)
    info = json.loads((folder / INFO).read_text())
    with np.load(folder / ARRAYS) as arrays:
        return TrainingTuple(
            category=info.pop("category"),
            input_video=from_uint8(arrays["input"]),
            target_video=from_uint8(arrays["target"]),
            trimask=trimask_from_file(arrays["trimask"]),
            keep_masks=torch.from_numpy(arrays["keep_masks"]),
            info=info,
        )


def to_uint8(video: torch.Tensor) -> np.ndarray:
    return (video.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def from_uint8(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).float() / 255.0


def trimask_to_file(trimask: torch.Tensor) -> np.ndarray:
    """Internal trimask {0 keep, 0.5 neutral, 1 remove} → file levels {255, 128, 0} (uint8)."""
    out = np.full(tuple(trimask.shape), FILE_NEUTRAL, np.uint8)
    values = trimask.numpy()
    out[values == KEEP] = FILE_KEEP
    out[values == REMOVE] = FILE_REMOVE
    return out


def trimask_from_file(levels: np.ndarray) -> torch.Tensor:
    """File levels (uint8) → internal trimask, with the reference's thresholds (> 192 keep, < 64 remove)."""
    from ..trimask import TrimaskJobs

    return TrimaskJobs.from_trimask_video(torch.from_numpy(np.ascontiguousarray(levels)), convention="file").trimasks[0]


def _write_manifest(root: Path, entries: list[dict]) -> None:
    # Written to a temporary file and renamed, so an interrupted run leaves a readable manifest.
    text = json.dumps({"format": FORMAT, "version": VERSION, "tuples": entries}, indent=1) + "\n"
    handle, temporary = tempfile.mkstemp(dir=root, prefix=".dataset_", suffix=".json")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.replace(temporary, root / MANIFEST)
