"""Real footage through the weight-free path (issue 8, item 4): clean plate → solo videos → ``fit_layers``, then the
false opacity of each layer outside its object's dilated mask and a picture of the layers.

    OMP_NUM_THREADS=2 python bench/real_footage.py ../shared/data/examples/boys-beach --frames 24 \\
        --long-side 256 --allow-camera-motion --figure docs/real_footage_boys_beach.png --json boys_beach.json
    OMP_NUM_THREADS=2 python bench/real_footage.py ../shared/data/examples/boys-beach --frames 24 \\
        --long-side 256 --stabilise --figure docs/real_footage_boys_beach_stabilised.png \\
        --json boys_beach_stabilised.json

``CLIP_FOLDER`` holds ``input_video.mp4`` and one ``mask_*.mp4`` per object (the layout of the public examples,
e.g. ``../shared/data/examples/boys-beach``); masks are read with ``omnimatte_core.video_io.read_masks`` and
thresholded at 0.5. As the demo does, the clean plate and the solo videos are built at the clip's resolution and the
layers are fitted at a base size (long side ``--long-side``, default 320).

Camera: the plate is first built without ``allow_camera_motion``; the report says whether that raised
``CameraMotionError`` and the travel the plate measured. Because that measurement compares every frame with the
first, the script also measures the camera independently (ORB features outside the dilated masks, a similarity
transform per pair of consecutive frames, RANSAC) and reports the travel of the view over the clip.

``--stabilise`` makes a locked-off clip out of hand-held footage: every frame (and mask) is warped onto the middle
frame of the window by the chained similarity transforms and the clip is cropped to the rectangle all frames cover.
The result is the same footage with the camera's motion removed (parallax and moving water stay).

False opacity per layer ``i`` (``omnimatte_core.metrics.false_opacity``): over the pixels farther than ``margin``
pixels (Chebyshev, at the base size) from object ``i``'s mask in that frame, the share with alpha > 0.05 and the mean
alpha there. The layer may legitimately hold the object's shadow or reflection outside its mask, so the share is
given for several margins (``--margins``, default 15 and 30 px). Each is also split by whether the solo video
differs from the plate there by more than 0.05 (surf and other moving background, other objects' effects, plate
errors) or matches it within that (noise and compression: opacity there is the veil of issue 8).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from omnimatte_core import export, metrics
from omnimatte_core.clean_plate import CameraMotionError, estimate_clean_plate, solo_videos
from omnimatte_core.fit import fit_layers
from omnimatte_core.masks import MASK_DILATION, dilate_masks
from omnimatte_core.upsample import resize_video
from omnimatte_core.video_io import read_masks, read_video

try:  # plate <-> layers rounds (issue 8, item 3), when that module is present
    from omnimatte_core.effect_aware import effect_aware_removal
except ImportError:  # pragma: no cover
    effect_aware_removal = None

ALPHA_THRESHOLD = 0.05
CHANGED = 0.05
"""A solo pixel differs from the plate when some channel differs by more than this (0..1)."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", type=Path, help="folder with input_video.mp4 and mask_*.mp4")
    parser.add_argument("--start", type=int, default=0, help="first frame of the window")
    parser.add_argument("--frames", type=int, default=24, help="frames in the window")
    parser.add_argument("--long-side", type=int, default=320, help="long side of the base size of the fit")
    parser.add_argument("--stabilise", action="store_true",
                        help="warp the frames onto the window's middle frame and crop (a locked-off clip)")
    parser.add_argument("--allow-camera-motion", action="store_true",
                        help="build the (blurred) clean plate even when the camera moves")
    parser.add_argument("--plate-rounds", type=int, default=0,
                        help="plate <-> layers rounds of omnimatte_core.effect_aware (0: the plain clean plate)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--steps", type=int, help="fit steps (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device of the fit (cpu, cuda)")
    parser.add_argument("--margins", type=int, nargs="+", default=[15, 30],
                        help="exclusion distances in base-size pixels around each object's mask")
    parser.add_argument("--show-frames", type=int, default=3, help="frames in the picture")
    parser.add_argument("--figure", type=Path, help="PNG to write (input, alpha, layer over checkerboard, plate)")
    parser.add_argument("--json", type=Path, help="JSON to write with every number")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------------------------------
# Input and camera


def read_clip(folder: Path, start: int, frames: int):
    video_path = folder / "input_video.mp4"
    mask_paths = sorted(folder.glob("mask_*.mp4"))
    if not video_path.is_file() or not mask_paths:
        raise SystemExit(f"{folder}: expected input_video.mp4 and mask_*.mp4")
    video, fps = read_video(video_path, max_frames=start + frames)
    masks = read_masks(mask_paths, threshold=0.5, max_frames=start + frames)
    if video.shape[0] < start + frames or masks.shape[1] != video.shape[0]:
        raise SystemExit(f"{folder}: the clip has {video.shape[0]} frames (masks {masks.shape[1]}); asked for "
                         f"frames {start}..{start + frames - 1}")
    return video[start:start + frames], masks[:, start:start + frames], fps, [p.stem for p in mask_paths]


def _grey_u8(frame: torch.Tensor) -> np.ndarray:
    return cv2.cvtColor(export.to_uint8(frame), cv2.COLOR_RGB2GRAY)


def pair_motion(video: torch.Tensor, masks: torch.Tensor) -> list[np.ndarray]:
    """Similarity transforms ``[2,3]`` mapping frame t onto frame t+1 (ORB outside the 11-px-dilated masks,
    RANSAC); one per consecutive pair."""
    covered = dilate_masks(masks.bool().any(dim=0), MASK_DILATION)[:, 0].numpy()
    orb = cv2.ORB_create(3000)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    features = []
    for t in range(video.shape[0]):
        keys, desc = orb.detectAndCompute(_grey_u8(video[t]), (~covered[t]).astype(np.uint8) * 255)
        features.append((keys, desc))
    transforms = []
    for t in range(video.shape[0] - 1):
        (k1, d1), (k2, d2) = features[t], features[t + 1]
        matches = matcher.match(d1, d2) if d1 is not None and d2 is not None else []
        if len(matches) < 12:
            raise SystemExit(f"frames {t}/{t + 1}: too few background features to measure the camera")
        a = np.float32([k1[m.queryIdx].pt for m in matches])
        b = np.float32([k2[m.trainIdx].pt for m in matches])
        transform, _ = cv2.estimateAffinePartial2D(a, b, method=cv2.RANSAC, ransacReprojThreshold=2.0)
        transforms.append(transform)
    return transforms


def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0, 0, 1]])


def to_reference(transforms: list[np.ndarray], reference: int) -> list[np.ndarray]:
    """Per frame the 3×3 transform mapping it onto frame ``reference`` (chained pair transforms)."""
    t = len(transforms) + 1
    out = [np.eye(3) for _ in range(t)]
    for f in range(reference - 1, -1, -1):  # f → f+1 → … → reference
        out[f] = out[f + 1] @ _h(transforms[f])
    for f in range(reference + 1, t):  # f → f-1 → … → reference
        out[f] = out[f - 1] @ np.linalg.inv(_h(transforms[f - 1]))
    return out


def camera_travel(transforms: list[np.ndarray], size: tuple[int, int]) -> dict:
    """How far the view moves over the clip: the frame centre mapped into frame 0, extent of its path (px), and
    the largest rotation (degrees) relative to frame 0."""
    h, w = size
    to_first = to_reference(transforms, 0)
    centre = np.array([w / 2, h / 2, 1.0])
    path = np.array([(m @ centre)[:2] for m in to_first])
    angles = np.degrees([np.arctan2(m[1, 0], m[0, 0]) for m in to_first])
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    return {"travel_px": float(np.linalg.norm(path.max(0) - path.min(0))),
            "horizontal_px": [float(path[:, 0].min() - path[0, 0]), float(path[:, 0].max() - path[0, 0])],
            "vertical_px": [float(path[:, 1].min() - path[0, 1]), float(path[:, 1].max() - path[0, 1])],
            "rotation_deg": float(np.abs(angles).max()),
            "median_step_px": float(np.median(steps)), "max_step_px": float(steps.max())}


def _largest_valid_box(valid: np.ndarray) -> tuple[int, int, int, int]:
    """Shrink the bounding box of ``valid`` side by side (the side with most invalid pixels first) until it holds
    only valid pixels; ``(top, bottom, left, right)``, exclusive ends."""
    ys, xs = np.nonzero(valid)
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    while not valid[top:bottom, left:right].all():
        sides = {"top": (~valid[top, left:right]).sum(), "bottom": (~valid[bottom - 1, left:right]).sum(),
                 "left": (~valid[top:bottom, left]).sum(), "right": (~valid[top:bottom, right - 1]).sum()}
        side = max(sides, key=sides.get)
        top, bottom = top + (side == "top"), bottom - (side == "bottom")
        left, right = left + (side == "left"), right - (side == "right")
    return int(top), int(bottom), int(left), int(right)


def stabilise(video: torch.Tensor, masks: torch.Tensor, transforms: list[np.ndarray]):
    """Warp every frame and mask onto the middle frame and crop to the rectangle every frame covers."""
    t, _, h, w = video.shape
    reference = t // 2
    warps = to_reference(transforms, reference)
    frames, mask_frames = [], []
    valid = np.ones((h, w), bool)
    for f in range(t):
        m = warps[f][:2].astype(np.float64)
        frames.append(cv2.warpAffine(video[f].permute(1, 2, 0).numpy(), m, (w, h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0))
        mask_frames.append(np.stack([cv2.warpAffine(masks[i, f, 0].numpy(), m, (w, h), flags=cv2.INTER_LINEAR)
                                     for i in range(masks.shape[0])]))
        covered = cv2.warpAffine(np.ones((h, w), np.float32), m, (w, h), flags=cv2.INTER_LINEAR)
        valid &= covered > 0.999
    top, bottom, left, right = _largest_valid_box(valid)
    bottom, right = top + (bottom - top) // 2 * 2, left + (right - left) // 2 * 2  # even sizes for video codecs
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[..., top:bottom, left:right].clamp(0, 1)
    masks = torch.from_numpy(np.stack(mask_frames, axis=1) > 0.5).float().unsqueeze(2)[..., top:bottom, left:right]
    return video.contiguous(), masks.contiguous(), {"reference_frame": reference, "crop_tlbr": [top, left, bottom,
                                                                                                right]}


# --------------------------------------------------------------------------------------------------------------------
# Metrics and picture


def base_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    h, w = size
    scale = min(1.0, long_side / max(h, w))
    return max(8, round(h * scale)), max(8, round(w * scale))


def false_opacity_table(alpha: torch.Tensor, masks: torch.Tensor, solos: torch.Tensor, background: torch.Tensor,
                        margins: list[int]) -> list[dict]:
    """Per layer and margin: false opacity (share, mean alpha) over the region farther than the margin from the
    object's mask; the region's share of the frame; and the same split by whether the solo video differs from the
    plate there by more than ``CHANGED`` in some channel (moving background such as surf, other objects' effects,
    plate errors) or not (differences at the level of noise and compression: the veil of issue 8)."""
    rows = []
    for i in range(alpha.shape[0]):
        row = {}
        changed = (solos[i] - background).abs().amax(dim=1, keepdim=True) > CHANGED
        opaque = alpha[i] > ALPHA_THRESHOLD
        for margin in margins:
            share, mean = metrics.false_opacity(alpha[i], masks[i], margin=margin, threshold=ALPHA_THRESHOLD)
            region = metrics.empty_region(masks[i], margin)
            quiet = region & ~changed
            row[f"margin_{margin}"] = {
                "share": share, "mean_alpha": mean, "region_share_of_frame": float(region.float().mean()),
                "changed_share_of_region": float((region & changed).sum() / region.sum().clamp_min(1)),
                "share_where_solo_matches_plate": float((quiet & opaque).sum() / quiet.sum().clamp_min(1)),
                "mean_alpha_where_solo_matches_plate": float(alpha[i][quiet].double().mean()),
                "share_where_solo_differs": float((region & changed & opaque).sum()
                                                  / (region & changed).sum().clamp_min(1)),
            }
        row["mean_alpha_inside_mask"] = float(alpha[i][masks[i] > 0.5].mean())
        rows.append(row)
    return rows


def _label(image: np.ndarray, text: str) -> np.ndarray:
    strip = np.full((image.shape[0], 92, 3), 255, np.uint8)
    for k, line in enumerate(text.split("\n")):
        cv2.putText(strip, line, (4, 16 + 14 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, image], axis=1)


def write_picture(path: Path, video, masks, alpha, rgb, plate, names, frames: int, title: str,
                  first: int = 0) -> None:
    """Rows: input (mask outlines), per layer alpha as grey, per layer over a checkerboard, clean plate;
    columns: ``frames`` frames spread over the clip."""
    t, _, h, w = video.shape
    picks = sorted({round(k * (t - 1) / max(1, frames - 1)) for k in range(frames)})
    checker = export.checkerboard(h, w, max(4, h // 16))
    gap = np.full((h, 2, 3), 255, np.uint8)

    def row(tiles):
        out = []
        for tile in tiles:
            out += [tile, gap]
        return np.concatenate(out[:-1], axis=1)

    def outlined(f):
        image = export.to_uint8(video[f]).copy()
        for i in range(masks.shape[0]):
            contours, _ = cv2.findContours((masks[i, f, 0].numpy() > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_NONE)
            colour = [(255, 60, 60), (60, 200, 255), (255, 220, 0), (120, 255, 120)][i % 4]
            cv2.drawContours(image, contours, -1, colour, 1)
        return image

    rows = [_label(row([outlined(f) for f in picks]), "input\n(mask\noutlines)")]
    for i, name in enumerate(names):
        rows.append(_label(row([export.to_uint8(alpha[i, f].expand(3, h, w)) for f in picks]), f"{name}\nalpha"))
    for i, name in enumerate(names):
        over = [export.to_uint8(alpha[i, f] * rgb[i, f] + (1 - alpha[i, f]) * checker) for f in picks]
        rows.append(_label(row(over), f"{name}\nover\nchecker"))
    plate_tile = export.to_uint8(plate)
    blank = np.full_like(plate_tile, 255)
    rows.append(_label(row([plate_tile] + [blank] * (len(picks) - 1)), "clean\nplate"))
    sep = np.full((2, rows[0].shape[1], 3), 255, np.uint8)
    body = np.concatenate([x for r in rows for x in (r, sep)][:-1], axis=0)
    header = np.full((34, body.shape[1], 3), 255, np.uint8)
    cv2.putText(header, title, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for k, f in enumerate(picks):
        cv2.putText(header, f"frame {f + first}", (92 + k * (w + 2) + 4, 29), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    (0, 0, 0), 1, cv2.LINE_AA)
    image = np.concatenate([header, body], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {path}")


# --------------------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    for path in (args.figure, args.json):
        if path is not None and path.exists():
            raise SystemExit(f"{path} exists; choose another path (nothing is overwritten)")
    started = time.perf_counter()
    report = {"clip": args.clip.name, "start": args.start, "frames": args.frames, "stabilised": args.stabilise,
              "preset": args.preset, "seed": args.seed, "threads": args.threads, "plate_rounds": args.plate_rounds,
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__}

    video, masks, fps, names = read_clip(args.clip, args.start, args.frames)
    report["input_size"] = list(video.shape[-2:])
    transforms = pair_motion(video, masks)
    report["camera_features"] = camera_travel(transforms, tuple(video.shape[-2:]))
    if args.stabilise:
        video, masks, report["stabilisation"] = stabilise(video, masks, transforms)
        report["camera_features_after"] = camera_travel(pair_motion(video, masks), tuple(video.shape[-2:]))
    t, _, h, w = video.shape
    report["size"] = [h, w]

    # The project's own camera check: does the clean plate accept the clip?
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            probe = estimate_clean_plate(video, masks)
            report["camera_check"] = {"refused": False, "camera_motion_px": probe.camera_motion_px}
        except CameraMotionError as error:
            report["camera_check"] = {"refused": True, "camera_motion_px": error.motion_px, "message": str(error)}
    if report["camera_check"]["refused"] and not args.allow_camera_motion:
        print(json.dumps(report, indent=1))
        raise SystemExit("the clean plate refuses this clip (CameraMotionError); pass --allow-camera-motion for a "
                         "blurred plate, or --stabilise")
    allow = bool(args.allow_camera_motion and report["camera_check"]["refused"])
    report["allow_camera_motion_used"] = allow

    size = base_size((h, w), args.long_side)
    report["base_size"] = list(size)
    fit_kwargs = dict(preset=args.preset, steps=args.steps, seed=args.seed, device=args.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.plate_rounds > 0:
            if effect_aware_removal is None:
                raise SystemExit("--plate-rounds needs omnimatte_core.effect_aware")
            removal = effect_aware_removal(video, masks, rounds=args.plate_rounds, allow_camera_motion=allow,
                                           fit_size=size, fit_kwargs=fit_kwargs)
            plate, solos = removal.plate, removal.solos
        else:
            plate = estimate_clean_plate(video, masks, allow_camera_motion=allow)
            solos = solo_videos(video, masks, plate)
    report["plate"] = {"filled_fraction": plate.filled_fraction, "camera_motion_px": plate.camera_motion_px,
                       "warnings": [str(c.message) for c in caught]}
    removal_seconds = time.perf_counter() - started

    solos_b = resize_video(solos, size, "area")
    background_b = resize_video(plate.background, size, "area")
    masks_b = (resize_video(masks, size, "area") > 0.5).float()
    video_b = resize_video(video, size, "area")
    fitted = fit_layers(solos_b, background_b, masks_b, **fit_kwargs)
    report["fit_seconds"] = fitted.seconds
    report["removal_seconds"] = removal_seconds
    composite = fitted.alpha * fitted.rgb + (1 - fitted.alpha) * background_b.unsqueeze(0)
    report["layers"] = []
    for i, row in enumerate(false_opacity_table(fitted.alpha, masks_b, solos_b, background_b, args.margins)):
        row = {"name": names[i], "composite_psnr_vs_solo": metrics.psnr(composite[i], solos_b[i]), **row}
        report["layers"].append(row)

    if args.figure:
        title = (f"{args.clip.name}{' stabilised' if args.stabilise else ''}, frames {args.start}-"
                 f"{args.start + t - 1}, {size[0]}x{size[1]}, weight-free path, preset {args.preset}"
                 f"{', blurred plate (camera moves)' if allow else ''}"
                 f"{f', plate rounds {args.plate_rounds}' if args.plate_rounds else ''}")
        write_picture(args.figure, video_b, masks_b, fitted.alpha, fitted.rgb, background_b[0], names,
                      args.show_frames, title, first=args.start)
        report["figure"] = str(args.figure)
    report["total_seconds"] = time.perf_counter() - started

    for row in report["layers"]:
        cells = "  ".join(f"margin {m}px: {100 * row[f'margin_{m}']['share']:.1f} % > {ALPHA_THRESHOLD}, "
                          f"mean {row[f'margin_{m}']['mean_alpha']:.3f} (where solo = plate: "
                          f"{100 * row[f'margin_{m}']['share_where_solo_matches_plate']:.1f} %, mean "
                          f"{row[f'margin_{m}']['mean_alpha_where_solo_matches_plate']:.3f}; elsewhere "
                          f"{100 * row[f'margin_{m}']['share_where_solo_differs']:.1f} % of the "
                          f"{100 * row[f'margin_{m}']['changed_share_of_region']:.1f} % that differ)"
                          for m in args.margins)
        print(f"{row['name']}: {cells}  (inside mask {row['mean_alpha_inside_mask']:.3f}, composite "
              f"{row['composite_psnr_vs_solo']:.2f} dB)")
    text = json.dumps(export._strict_json(report), indent=1, allow_nan=False)
    if args.json:
        args.json.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
