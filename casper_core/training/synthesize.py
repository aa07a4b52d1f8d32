"""Command line: write a training set of Casper tuples into a new folder.

::

    python -m casper_core.training.synthesize OUT --synthetic 480 --object-paste 20 \\
        [--omnimatte RUN_FOLDER ...] [--tripod CLIP_FOLDER ...] [--frames 80 --height 256 --width 448]

- ``--synthetic N``: N effect scenes (`casper_core.training.synthetic_source`).
- ``--object-paste N``: N Object-Paste tuples; objects are cut from synthetic scenes and from the tripod clips,
  pasted onto synthetic scenes and tripod clips.
- ``--omnimatte RUN``: a layer run folder written by `omnimatte_core.export.export_layers` (repeatable); gives the
  remove-all job and, for several layers, one solo job per layer.
- ``--tripod CLIP``: a folder with ``video.mp4`` (or a ``video/`` frame folder), ``masks/`` (one mask video or frame
  folder per object) and ``plate.png`` (or ``plate.mp4`` / a ``plate/`` folder) (repeatable).
- ``--short-side S``: real clips are resized so their shorter side is S pixels (default 256; 0 keeps the size).

Numbers follow the paper's mix by default at training time (`casper_core.training.config.DataConfig.mix`); the set
itself holds whatever is asked for here. OUT must not exist.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .paste_source import object_paste_tuple
from .real_sources import omnimatte_tuples, read_exported_layers, tripod_tuple
from .storage import append_tuple, create_dataset_root
from .synthetic_source import synthetic_tuple

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m casper_core.training.synthesize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="new folder for the training set (must not exist)")
    parser.add_argument("--synthetic", type=int, default=0, help="number of synthetic effect scenes")
    parser.add_argument("--object-paste", type=int, default=0, help="number of Object-Paste tuples")
    parser.add_argument("--omnimatte", type=Path, action="append", default=[], help="exported layer run folder")
    parser.add_argument("--tripod", type=Path, action="append", default=[], help="tripod clip folder")
    parser.add_argument("--frames", type=int, default=80, help="frames of synthetic tuples (default 80)")
    parser.add_argument("--height", type=int, default=256, help="height of synthetic tuples (default 256)")
    parser.add_argument("--width", type=int, default=448, help="width of synthetic tuples (default 448)")
    parser.add_argument("--short-side", type=int, default=256, help="resize real clips to this shorter side (0: keep)")
    parser.add_argument("--dilate", type=int, default=5, help="mask dilation in the trimasks, pixels (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of all random choices (default 0)")
    args = parser.parse_args(argv)
    for name in ("synthetic", "object_paste", "dilate", "short_side"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be ≥ 0, got {getattr(args, name)}")
    if args.synthetic + args.object_paste + len(args.omnimatte) + len(args.tripod) == 0:
        parser.error("nothing to write: give --synthetic, --object-paste, --omnimatte or --tripod")
    if args.out.exists():
        parser.error(f"{args.out} already exists; the training set is written into a new folder")
    return args


def main(argv=None) -> int:
    from tqdm.auto import tqdm

    args = parse_args(argv)
    # 1. Read the real clips first, so a bad file stops the run before anything is written
    layer_runs = [(path, read_exported_layers(path)) for path in args.omnimatte]
    tripods = [(path, *read_tripod_clip(path, args.short_side)) for path in args.tripod]
    size = dict(frames=args.frames, height=args.height, width=args.width)

    root = create_dataset_root(args.out)
    total = args.synthetic + args.object_paste + len(layer_runs) + len(tripods)
    with tqdm(total=total, desc="training tuples", unit="tuple") as bar:
        for index in range(args.synthetic):
            append_tuple(root, synthetic_tuple(args.seed * 1_000_003 + index, dilate=args.dilate, **size))
            bar.update(1)
        for path, layers in layer_runs:
            layers = _resize_layers(layers, args.short_side)
            for example in omnimatte_tuples(layers, dilate=args.dilate, info={"run": str(path)}):
                append_tuple(root, example)
            bar.update(1)
        for path, video, masks, plate in tripods:
            append_tuple(root, tripod_tuple(video, masks, plate, dilate=args.dilate, info={"clip": str(path)}))
            bar.update(1)
        for index in range(args.object_paste):
            append_tuple(root, _paste_example(args.seed * 1_000_003 + index, tripods, size, args.dilate))
            bar.update(1)
    print(f"wrote {total} source item(s) into {root}")
    return 0


def _paste_example(seed: int, tripods, size: dict, dilate: int):
    """Object-Paste from the pool: donors and hosts are synthetic scenes or tripod clips."""
    from omnimatte_core.synthetic import make_scene

    rng = np.random.default_rng([seed, 21])

    def clip(kind_seed):
        pick = int(rng.integers(0, len(tripods) + 1))
        if pick < len(tripods):
            _, video, masks, _ = tripods[pick]
            return video, masks > 0.5, f"tripod:{tripods[pick][0]}"
        scene = make_scene(kind_seed, int(rng.integers(1, 4)), size["frames"], size["height"], size["width"])
        return scene.composite.permute(0, 2, 3, 1), scene.masks[:, :, 0] > 0.5, f"synthetic:{kind_seed}"

    host, host_masks, host_name = clip(int(rng.integers(0, 2**31 - 1)))
    donor, donor_masks, donor_name = clip(int(rng.integers(0, 2**31 - 1)))
    donor_mask = donor_masks[int(rng.integers(0, donor_masks.shape[0]))]
    return object_paste_tuple(host, donor, donor_mask, seed=seed, host_keep_masks=host_masks, dilate=dilate,
                              info={"host": host_name, "donor": donor_name})


def read_tripod_clip(folder: Path, short_side: int):
    """``(video [T,H,W,3], masks [N,T,H,W], plate [H,W,3] or [T,H,W,3])`` of a tripod clip folder."""
    from omnimatte_core.video_io import read_masks, read_video

    folder = Path(folder)
    video_path = _find(folder, "video", VIDEO_SUFFIXES)
    plate_path = _find(folder, "plate", VIDEO_SUFFIXES + IMAGE_SUFFIXES)
    mask_folder = folder / "masks"
    mask_paths = sorted(p for p in mask_folder.iterdir() if not p.name.startswith(".")) if mask_folder.is_dir() else []
    if not mask_paths:
        raise FileNotFoundError(f"tripod clip {folder}: no masks/ folder with one mask video or frame folder per object")
    video, _ = read_video(video_path)  # [T,3,H,W]
    masks = read_masks(mask_paths, num_frames=video.shape[0], size=tuple(video.shape[-2:]))[:, :, 0]
    if plate_path.suffix.lower() in IMAGE_SUFFIXES:
        plate = _read_plate_image(plate_path)[None]
    else:
        plate, _ = read_video(plate_path)
    if tuple(plate.shape[-2:]) != tuple(video.shape[-2:]):
        raise ValueError(f"tripod clip {folder}: plate is {tuple(plate.shape[-2:])} (H,W), the video "
                         f"{tuple(video.shape[-2:])}")
    if plate.shape[0] not in (1, video.shape[0]):
        raise ValueError(f"tripod clip {folder}: plate video has {plate.shape[0]} frames, the video {video.shape[0]}")
    size = _short_side_size(tuple(video.shape[-2:]), short_side)
    video, plate = _resize(video, size), _resize(plate, size)
    masks = _resize(masks[:, :, None].float().flatten(0, 1), size).view(*masks.shape[:2], *size) > 0.5
    plate = plate[0] if plate.shape[0] == 1 else plate
    return video.permute(0, 2, 3, 1), masks, plate.movedim(-3, -1)


def _read_plate_image(path: Path) -> torch.Tensor:
    """A still clean plate as ``[3,H,W]`` float 0..1 (8- or 16-bit PNG/JPG)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise ValueError(f"could not read the plate image {path} (unsupported or corrupt file)")
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    return torch.from_numpy(image[..., ::-1].astype(np.float32) / scale).permute(2, 0, 1).contiguous()


def _find(folder: Path, stem: str, suffixes) -> Path:
    for suffix in suffixes:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    if (folder / stem).is_dir():
        return folder / stem
    raise FileNotFoundError(f"tripod clip {folder}: no {stem} ({stem}.mp4 / {stem}.png / a {stem}/ frame folder)")


def _short_side_size(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    if not short_side:
        return size
    scale = short_side / min(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _resize(video: torch.Tensor, size) -> torch.Tensor:
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    return F.interpolate(video.float(), size=size, mode="area" if size[0] < video.shape[-2] else "bilinear").clamp(0, 1)


def _resize_layers(layers, short_side: int):
    size = _short_side_size(layers.size, short_side)
    if size == layers.size:
        return layers
    n, t = layers.num_layers, layers.num_frames
    rgb = _resize(layers.rgb.flatten(0, 1), size).view(n, t, 3, *size)
    alpha = _resize(layers.alpha.flatten(0, 1), size).view(n, t, 1, *size)
    return layers.replace(rgb=rgb, alpha=alpha, background=_resize(layers.background, size),
                          masks=None if layers.masks is None else
                          (_resize(layers.masks.flatten(0, 1), size).view(n, t, 1, *size) > 0.5).float())


if __name__ == "__main__":
    sys.exit(main())
