"""Sweep fit settings on synthetic scenes with ground truth (a tuning aid; prints a table, writes JSON).

    python bench/tune_fit.py --device cuda --out tune.json \
        --grid "recon=l1,l2" "sparsity_weight=0.05,0.1,0.2" --steps 100,200,400

Each grid row is one setting of `FitConfig` fields; every combination is fitted on every scene
(seeds × object counts) at 24 frames, 128×224, and scored with `omnimatte_core.metrics.layer_quality`.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from omnimatte_core.fit import fit_layers
from omnimatte_core.metrics import layer_quality
from omnimatte_core.synthetic import make_scene

from bench_omnimatte import parse_value  # the sibling script (bench/ is on sys.path when a script there runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--grid", nargs="*", default=[], help="field=v1,v2,... (FitConfig fields)")
    parser.add_argument("--steps", default="200")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--objects", default="2,3")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="128x224")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    h, w = (int(v) for v in args.size.split("x"))
    axes = [("steps", [int(s) for s in args.steps.split(",")])]
    for item in args.grid:
        name, values = item.split("=", 1)
        axes.append((name, [parse_value(v) for v in values.split(",")]))
    scenes = [(seed, n, make_scene(seed, n, args.frames, h, w))
              for seed in (int(s) for s in args.seeds.split(",")) for n in (int(s) for s in args.objects.split(","))]

    rows = []
    for combo in itertools.product(*(values for _, values in axes)):
        overrides = dict(zip((name for name, _ in axes), combo))
        worst = {"psnr": float("inf"), "mae": 0.0, "recall": 1.0}
        per_effect: dict[str, list] = {}
        seconds = 0.0
        per_scene = []
        for seed, n, scene in scenes:
            started = time.perf_counter()
            fit = fit_layers(scene.solos, scene.background, scene.masks, device=args.device, **overrides)
            seconds += time.perf_counter() - started
            quality = layer_quality(fit.rgb, fit.alpha, scene)
            per_scene.append({"seed": seed, "objects": n, "quality": quality})
            for q in quality:
                worst["psnr"] = min(worst["psnr"], q["composite_psnr"])
                worst["mae"] = max(worst["mae"], q["alpha_mae"])
                worst["recall"] = min(worst["recall"], q["effect_recall"])
                per_effect.setdefault(q["effect_type"], []).append(q)
        row = {"settings": overrides, "worst": worst, "per_scene": per_scene, "seconds_per_scene": seconds / len(scenes),
               "per_effect": {k: {m: sum(q[m] for q in v) / len(v) for m in ("composite_psnr", "alpha_mae",
                                                                             "effect_recall")}
                              for k, v in per_effect.items()}}
        rows.append(row)
        ok = worst["psnr"] >= 35 and worst["mae"] <= 0.02 and worst["recall"] >= 0.8
        print(f"{'PASS' if ok else 'fail'} psnr {worst['psnr']:6.2f}  mae {worst['mae']:.4f}  "
              f"recall {worst['recall']:.3f}  {seconds / len(scenes):6.2f}s/scene  {overrides}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": str(args.device or ("cuda" if torch.cuda.is_available() else "cpu")),
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
