"""Time (and on CUDA, peak memory) of ordering, compositing, detail transfer, the clean plate and edits on a
synthetic scene; prints a table and writes JSON (never overwriting).

    python bench/bench_layers.py --device cuda --out bench_layers_cuda.json                 # 1080p, 85 frames
    python bench/bench_layers.py --device cpu --height 270 --width 480 --frames 24 --out bench_layers_cpu.json

Each stage runs once to warm up, then ``--repeats`` times; the table shows the median. The scene is rendered on the
CPU (not timed) and moved to the device.
"""
import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch

from omnimatte_core import clean_plate, compositing, editing, ordering
from omnimatte_core.layers import Layers
from omnimatte_core.synthetic import make_scene


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", required=True, help="JSON path (must not exist)")
    parser.add_argument("--frames", type=int, default=85)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def measure(device: torch.device, fn, repeats: int) -> dict:
    """Median seconds over ``repeats`` runs after one warm-up; peak extra CUDA memory of one run in GiB."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    peak = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**30
    return {"seconds": statistics.median(times), "runs": times, "peak_extra_gib": peak}


def main():
    args = parse_args()
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; refusing to overwrite it (pass another --out)")
    device = torch.device(args.device)

    start = time.perf_counter()
    scene = make_scene(args.seed, args.objects, args.frames, args.height, args.width)
    render_s = time.perf_counter() - start
    video = scene.composite.to(device)
    masks = scene.masks.to(device)
    depth = scene.depth.to(device)
    layers = Layers(scene.layer_rgb, scene.layer_alpha, scene.background, scene.order, masks=scene.masks).to(device)
    new_background = torch.rand(3, args.height // 2, args.width // 2, generator=torch.Generator().manual_seed(0))
    del scene

    def plate():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", clean_plate.CleanPlateWarning)
            return clean_plate.estimate_clean_plate(video, masks)

    the_plate = plate()
    stages = {
        "order_from_depth": lambda: ordering.order_from_depth(depth, masks, bright_is_near=False),
        "reconstruct": lambda: compositing.reconstruct(layers),
        "composited_opacity": lambda: compositing.composited_opacity(layers.alpha, layers.order),
        "detail_transfer": lambda: compositing.detail_transfer(layers, video),
        "camera_motion_check": lambda: clean_plate.measure_camera_motion(video, masks),
        "clean_plate": plate,
        "solo_videos": lambda: clean_plate.solo_videos(video, masks, the_plate),
        "recomposite_new_background": lambda: editing.recomposite(layers, new_background),
        "retime_layer_speed_0.5": lambda: editing.retime_layer(layers, 0, speed=0.5),
        "fade_layer": lambda: editing.fade_layer(layers, 0, fade_in=10, fade_out=10),
    }
    results = {}
    print(f"{args.frames} frames {args.height}x{args.width}, {args.objects} layers, device {device} "
          f"(scene rendered in {render_s:.1f} s)")
    print(f"{'stage':32s} {'seconds':>9s} {'peak extra GiB':>15s}")
    for name, fn in stages.items():
        results[name] = measure(device, fn, args.repeats)
        peak = results[name]["peak_extra_gib"]
        print(f"{name:32s} {results[name]['seconds']:9.3f} {'-' if peak is None else f'{peak:.2f}':>15s}")

    report = {
        "config": vars(args),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "plate_camera_motion_px": the_plate.camera_motion_px,
        "plate_filled_fraction": the_plate.filled_fraction,
        "stages": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "x") as handle:  # "x": never overwrite
        json.dump(report, handle, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
