"""Full-resolution path timing: base-resolution removal outputs → upsampling → bootstrapped full-res fit → export.

    python bench/bench_fullres.py --device cuda --out bench_fullres.json
    python bench/bench_fullres.py --device cpu --case 8x128x224x2 --base-size 64x112 --steps 5 --full-res-steps 5

A synthetic scene (omnimatte_core.synthetic, seed 0) at the full size gives the ground truth. Its solo and background
videos, area-downsampled to --base-size, stand in for Casper's base-resolution outputs. Measured per stage: seconds,
peak GPU memory (CUDA) and peak process memory; quality of the full-resolution layers against ground truth; and the
time to export them (omnimatte_core.export, --formats). Prints a table and writes JSON (never overwritten). In the
quality table "up" is the base layers bilinearly upsampled (no full-resolution fit), "full" the full-res fit.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

from omnimatte_core.export import export_layers
from omnimatte_core.fit import fit_layers
from omnimatte_core.layers import Layers
from omnimatte_core.metrics import layer_quality
from omnimatte_core.synthetic import make_scene
from omnimatte_core.upsample import resize_video, upscale_and_refine


def parse_dims(text: str, count: int) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.lower().split("x"))
    if len(values) != count:
        raise SystemExit(f"expected {count} numbers separated by 'x', got {text!r}")
    return values


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class Timer:
    def __init__(self, device: torch.device):
        self.device = device
        self.rows: list[dict] = []

    def __call__(self, stage: str, fn):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        row = {"stage": stage, "seconds": round(time.perf_counter() - start, 2),
               "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.device.type == "cuda"
               else None, "peak_rss_gb": round(peak_rss_gb(), 2)}
        self.rows.append(row)
        print(f"  {stage:<22}{row['seconds']:>9.1f} s", flush=True)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, help="JSON path for the results (must not exist)")
    parser.add_argument("--case", default="85x1080x1920x2", help="FRAMESxHEIGHTxWIDTHxOBJECTS of the input")
    parser.add_argument("--base-size", default="384x672", help="HEIGHTxWIDTH of the removal outputs (Casper's size)")
    parser.add_argument("--resampler", default="bicubic")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--steps", type=int, help="base fit steps (default: the preset's)")
    parser.add_argument("--full-res-steps", type=int, help="full-resolution fit steps (default: the preset's)")
    parser.add_argument("--formats", nargs="*", default=["png", "prores"],
                        help="export formats to time (none: skip the export)")
    args = parser.parse_args()
    if args.out is not None and args.out.exists():
        raise SystemExit(f"{args.out} exists; refusing to overwrite it")
    frames, height, width, objects = parse_dims(args.case, 4)
    base_size = parse_dims(args.base_size, 2)
    device = torch.device(args.device)
    timer = Timer(device)

    print(f"case {args.case}, base {args.base_size}, preset {args.preset}, device {device}")
    scene = timer("synthetic scene", lambda: make_scene(0, objects, frames, height, width))
    solos_base = timer("downsample (stand-in)", lambda: resize_video(scene.solos, base_size, "area"))
    background_base = resize_video(scene.background, base_size, "area")
    masks_base = (resize_video(scene.masks, base_size, "area") > 0.5).float()
    base = timer("fit base", lambda: fit_layers(solos_base, background_base, masks_base, preset=args.preset,
                                                steps=args.steps, device=device))
    full, background_hr = timer("upsample + fit full-res", lambda: upscale_and_refine(
        base, solos_base, background_base, scene.composite, scene.masks, resampler=args.resampler,
        preset=args.preset, steps=args.full_res_steps, device=device))
    quality = layer_quality(full.rgb, full.alpha, scene)
    base_quality = layer_quality(resize_video(base.rgb, (height, width), "bilinear"),
                                 resize_video(base.alpha, (height, width), "bilinear"), scene)
    if args.formats:
        layers = Layers(rgb=full.rgb, alpha=full.alpha, background=background_hr, order=scene.order, fps=scene.fps)
        with tempfile.TemporaryDirectory() as folder:
            timer("export " + "+".join(args.formats), lambda: export_layers(layers, folder, formats=args.formats))

    result = {
        "case": args.case, "base_size": args.base_size, "preset": args.preset, "resampler": args.resampler,
        "base_steps": base.steps, "full_res_steps": full.steps, "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__, "python": platform.python_version(), "stages": timer.rows,
        "quality_full_res": quality, "quality_base_upsampled": base_quality,
    }
    print(f"\n{'stage':<24}{'seconds':>9}{'peak GPU GB':>13}{'peak RSS GB':>13}")
    for row in timer.rows:
        gpu = "-" if row["peak_gpu_gb"] is None else f"{row['peak_gpu_gb']:.2f}"
        print(f"{row['stage']:<24}{row['seconds']:>9.1f}{gpu:>13}{row['peak_rss_gb']:>13.2f}")
    print(f"\n{'layer':<8}{'effect':<12}{'PSNR up':>11}{'PSNR full':>11}{'αMAE up':>12}{'αMAE full':>11}")
    for i, (b, f) in enumerate(zip(base_quality, quality)):
        print(f"{i:<8}{f['effect_type']:<12}{b['composite_psnr']:>11.2f}{f['composite_psnr']:>11.2f}"
              f"{b['alpha_mae']:>12.4f}{f['alpha_mae']:>11.4f}")
    if args.out is not None:
        with open(args.out, "x") as handle:  # "x": never overwrite
            json.dump(result, handle, indent=1, default=str)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
