"""Benchmark of the omnimatte fit: seconds per layer and per video, peak memory, and quality against ground truth.

    python bench/bench_omnimatte.py --device cuda --out bench_omnimatte.json
    python bench/bench_omnimatte.py --device cpu --cases 24x128x224x2 --presets preview     # a quick CPU check
    python bench/bench_omnimatte.py --device cuda --fullres 85x1080x1920x1 --base-size 384x672

Cases are FRAMESxHxWxOBJECTS synthetic scenes (omnimatte_core.synthetic, seed 0, ground-truth solos and background).
`--fullres` adds the bootstrapped full-resolution stage: base fit at --base-size, then the full-resolution fit.
Prints a table last and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from omnimatte_core.fit import fit_layers, fit_layers_full_res
from omnimatte_core.metrics import layer_quality
from omnimatte_core.synthetic import make_scene


def parse_case(text: str) -> tuple[int, int, int, int]:
    t, h, w, n = (int(v) for v in text.lower().split("x"))
    return t, h, w, n


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def resize_video(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[..., C, H, W]`` → area-resized to ``size``."""
    lead = x.shape[:-3]
    y = F.interpolate(x.reshape(-1, *x.shape[-3:]), size=size, mode="area")
    return y.reshape(*lead, *y.shape[-3:])


def summarise(quality: list[dict]) -> dict:
    return {
        "min_composite_psnr": min(q["composite_psnr"] for q in quality),
        "max_alpha_mae": max(q["alpha_mae"] for q in quality),
        "min_effect_recall": min(q["effect_recall"] for q in quality),
        "per_object": quality,
    }


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_fit(fn, device: str):
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    synchronize(device)
    started = time.perf_counter()
    fit = fn()
    synchronize(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    return fit, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", nargs="*", default=["85x384x672x1", "85x384x672x3", "85x128x224x1", "85x128x224x3"])
    parser.add_argument("--presets", nargs="*", default=["default", "preview"])
    parser.add_argument("--fullres", nargs="*", default=[], help="FRAMESxHxWxOBJECTS at full resolution")
    parser.add_argument("--base-size", default="384x672")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override base-stage FitConfig fields, e.g. --set steps=300 sparsity_weight=0.05")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    overrides = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True

    # Warm-up: kernel selection and allocator growth stay out of the timings.
    warm = make_scene(0, 1, 8, 64, 112)
    fit_layers(warm.solos, warm.background, warm.masks, steps=5, device=args.device)

    rows = []
    for case in args.cases:
        t, h, w, n = parse_case(case)
        scene = make_scene(args.seed, n, t, h, w)
        # Per-case warm-up on the same shapes: cuDNN's algorithm search (benchmark mode) runs once per shape and
        # would otherwise land in whichever preset is timed first (with the same overrides: they can change shapes).
        fit_layers(scene.solos, scene.background, scene.masks, device=args.device, **{**overrides, "steps": 3})
        for preset in args.presets:
            fit, seconds, peak = timed_fit(lambda: fit_layers(scene.solos, scene.background, scene.masks,
                                                              preset=preset, device=args.device,
                                                              **(overrides if preset == "default" else {})),
                                       args.device)
            row = {"stage": "base", "case": case, "preset": preset, "settings": fit.config.to_dict(), "steps": fit.steps, "seconds": seconds,
                   "seconds_per_layer": seconds / n, "ms_per_step": 1000 * seconds / fit.steps,
                   "peak_gib": peak, **summarise(layer_quality(fit.rgb, fit.alpha, scene))}
            rows.append(row)
            print(f"{case:>14} {preset:>8}: {seconds:7.2f} s ({seconds / n:6.2f} s/layer)  "
                  f"psnr {row['min_composite_psnr']:.2f}  mae {row['max_alpha_mae']:.4f}  "
                  f"recall {row['min_effect_recall']:.3f}  peak {peak:.2f} GiB", flush=True)
            del fit

    base_h, base_w = (int(v) for v in args.base_size.split("x"))
    for case in args.fullres:
        t, h, w, n = parse_case(case)
        scene = make_scene(args.seed, n, t, h, w)
        solos_b, bg_b, masks_b = (resize_video(x, (base_h, base_w)) for x in (scene.solos, scene.background,
                                                                               scene.masks))
        masks_b = (masks_b > 0.5).float()
        # Warm-up of both stages on these shapes, as for the cases above: without it cuDNN's algorithm search
        # (about 70 s per stage at these sizes on an H200) landed in the timed fits.
        warm_base = fit_layers(solos_b, bg_b, masks_b, device=args.device, **{**overrides, "steps": 3})
        fit_layers_full_res(scene.solos, scene.background, scene.masks, warm_base, steps=3, device=args.device)
        del warm_base
        base, base_s, base_peak = timed_fit(lambda: fit_layers(solos_b, bg_b, masks_b, device=args.device,
                                                               **overrides),
                                            args.device)
        full, full_s, full_peak = timed_fit(lambda: fit_layers_full_res(scene.solos, scene.background, scene.masks,
                                                                        base, device=args.device), args.device)
        row = {"stage": "full_res", "case": case, "base_size": args.base_size, "preset": "default",
               "base_seconds": base_s, "seconds": full_s, "total_seconds": base_s + full_s,
               "steps": full.steps, "ms_per_step": 1000 * full_s / full.steps,
               "peak_gib": max(base_peak, full_peak), **summarise(layer_quality(full.rgb, full.alpha, scene))}
        # what the full-resolution stage starts from: the base layers upsampled (bilinear) to the scene's size
        upsampled = [F.interpolate(x.flatten(0, 1), size=(h, w), mode="bilinear", align_corners=False)
                     .reshape(*x.shape[:3], h, w).clamp(0.0, 1.0) for x in (base.rgb, base.alpha)]
        row["base_upsampled"] = summarise(layer_quality(*upsampled, scene))
        rows.append(row)
        print(f"{case:>14} full-res: base {base_s:.2f} s + full {full_s:.2f} s  psnr {row['min_composite_psnr']:.2f}"
              f"  mae {row['max_alpha_mae']:.4f}  recall {row['min_effect_recall']:.3f}  peak {row['peak_gib']:.2f} GiB",
              flush=True)
        del scene, base, full

    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"\n| case | stage | preset | steps | s/video | s/layer | ms/step | peak GiB | min PSNR | max α-MAE | "
          f"min recall |  ({device_name}, torch {torch.__version__})")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        n = parse_case(r["case"])[3]
        secs = r.get("total_seconds", r["seconds"])
        print(f"| {r['case']} | {r['stage']} | {r['preset']} | {r['steps']} | {secs:.2f} | {secs / n:.2f} | "
              f"{r['ms_per_step']:.1f} | {r['peak_gib']:.2f} | {r['min_composite_psnr']:.2f} | "
              f"{r['max_alpha_mae']:.4f} | {r['min_effect_recall']:.3f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": device_name, "torch": torch.__version__, "rows": rows}, f, indent=1, default=float)


if __name__ == "__main__":
    main()
