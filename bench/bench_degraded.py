"""The layer fit on inputs as users have them: solo and background videos that are not exact composites.

    python bench/bench_degraded.py --device cpu --out degraded.json
    python bench/bench_degraded.py --device cuda --sizes 16x96x160 24x128x224 --seeds 0 1 --out degraded.json
    python bench/bench_degraded.py --set colour_smoothing=0 noise_threshold=0 align_inputs=false   # the old objective

Each case is a synthetic scene (omnimatte_core.synthetic.make_scene, FRAMESxHxW, objects with a shadow and a
reflection, optionally a dust trail with --objects 3) whose solo and background videos are degraded independently
(omnimatte_core.synthetic.DEGRADATIONS: noise σ 2/255 and 4/255, JPEG 85, colour drift ±2 %, a 0.5 px background
shift, and their combinations). The layers are scored against the exact ground truth with metrics that reconstruction
alone cannot satisfy: false opacity (share of pixels ≥ 3 px from any true alpha with alpha > 0.05) and the mean alpha
there, the alpha error on effect pixels (true translucent alpha vs fitted), effect recall, the alpha error inside the
object, and composite PSNR of the layer over the clean background against the clean solo. Prints a table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch

from omnimatte_core.fit import fit_layers
from omnimatte_core.metrics import layer_quality
from omnimatte_core.synthetic import DEGRADATIONS, degrade_scene, make_scene

try:  # run as a script (bench/ on sys.path) or as a module
    from bench_omnimatte import parse_value, synchronize
except ImportError:  # pragma: no cover
    from bench.bench_omnimatte import parse_value, synchronize

KEYS = ("false_opacity", "mean_false_alpha", "effect_alpha_error", "effect_recall", "alpha_mae_object",
        "composite_psnr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", nargs="*", default=["16x96x160"], help="FRAMESxHxW")
    parser.add_argument("--objects", type=int, default=2, help="2: shadow + reflection; 3: + dust")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--degradations", nargs="*", default=list(DEGRADATIONS))
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="FitConfig overrides")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    overrides = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))

    rows = []
    for size in args.sizes:
        t, h, w = (int(v) for v in size.lower().split("x"))
        for seed in args.seeds:
            effects = ["shadow", "reflection", "dust"][:args.objects]
            scene = make_scene(seed=seed, num_objects=args.objects, frames=t, height=h, width=w, effects=effects)
            for name in args.degradations:
                degraded = degrade_scene(scene, name, seed=seed + 1)
                synchronize(args.device)
                started = time.perf_counter()
                fit = fit_layers(degraded.solos, degraded.background, degraded.masks, preset=args.preset,
                                 device=args.device, **overrides)
                synchronize(args.device)
                seconds = time.perf_counter() - started
                for q in layer_quality(fit.rgb, fit.alpha, degraded):
                    row = {"size": size, "seed": seed, "degradation": name, "seconds": seconds,
                           **{k: q[k] for k in KEYS}, "effect_type": q["effect_type"]}
                    rows.append(row)
                    print(f"{size:>10} seed {seed} {name:>9} {q['effect_type']:>10}: "
                          + "  ".join(f"{k} {row[k]:.4f}" for k in KEYS) + f"  ({seconds:.1f} s)", flush=True)

    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"\nworst over sizes {args.sizes} and seeds {args.seeds}, preset {args.preset} {overrides or ''} "
          f"({device_name}, torch {torch.__version__})")
    print("| degradation | effect | false opacity | mean false α | effect α error | effect recall | object α error "
          "| composite PSNR (clean) |")
    print("|---|---|---|---|---|---|---|---|")
    summary = []
    for name in args.degradations:
        for effect in sorted({r["effect_type"] for r in rows}):
            group = [r for r in rows if r["degradation"] == name and r["effect_type"] == effect]
            worst = {
                "degradation": name, "effect": effect,
                "false_opacity": max(r["false_opacity"] for r in group),
                "mean_false_alpha": max(r["mean_false_alpha"] for r in group),
                "effect_alpha_error": max(r["effect_alpha_error"] for r in group),
                "effect_recall": min((r["effect_recall"] for r in group if not math.isnan(r["effect_recall"])),
                                     default=math.nan),
                "alpha_mae_object": max(r["alpha_mae_object"] for r in group),
                "composite_psnr": min(r["composite_psnr"] for r in group),
            }
            summary.append(worst)
            print(f"| {name} | {effect} | {100 * worst['false_opacity']:.2f} % | {worst['mean_false_alpha']:.4f} | "
                  f"{worst['effect_alpha_error']:.3f} | {worst['effect_recall']:.3f} | "
                  f"{worst['alpha_mae_object']:.3f} | {worst['composite_psnr']:.1f} dB |")
    if args.out:
        def finite(value):  # strict JSON: nan/inf become null
            if isinstance(value, float) and not math.isfinite(value):
                return None
            return {k: finite(v) for k, v in value.items()} if isinstance(value, dict) else value

        with open(args.out, "w") as f:
            json.dump({"device": device_name, "torch": torch.__version__, "preset": args.preset,
                       "overrides": overrides, "rows": [finite(r) for r in rows],
                       "summary": [finite(r) for r in summary]}, f, indent=1, allow_nan=False)


if __name__ == "__main__":
    main()
