"""Cross-talk of the weight-free path on the demo scene (or another synthetic scene): the plain clean plate against
plate ↔ layers rounds (``omnimatte_core.effect_aware``), scored against the scene's ground truth.

    OMP_NUM_THREADS=1 python bench/bench_cross_talk.py --threads 1 --out cross_talk.json
    OMP_NUM_THREADS=1 python bench/bench_cross_talk.py --threads 1 --frames 12 --height 64 --width 112 --configs 0 2 \
        --out small.json

Per configuration: the removal (with its internal fits), then the final fit of its solos against its plate with the
same settings, as the demo does. Columns per layer: cross-talk (mean alpha of this layer on the other object's
effect pixels, where its own true alpha is 0), own effect recall, effect-alpha error, false opacity, composite PSNR;
plus the plate's PSNR against the true background and the seconds of the whole configuration.
"""
import argparse
import json
import platform
import time
from pathlib import Path

import torch

from omnimatte_core import metrics
from omnimatte_core.demo_scene import DEMO_PRESET, DEMO_SCENE
from omnimatte_core.effect_aware import effect_aware_removal
from omnimatte_core.fit import fit_layers
from omnimatte_core.synthetic import make_scene

CONFIGS = {
    "plain clean plate (rounds 0)": dict(rounds=0),
    "rounds 1, remove all of the other layers": dict(rounds=1, ownership=False),
    "rounds 1, remove what moves with the other object": dict(rounds=1),
    "rounds 2, remove what moves with the other object": dict(rounds=2),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON path (must not exist)")
    parser.add_argument("--preset", default=DEMO_PRESET)
    parser.add_argument("--steps", type=int, help="steps of every fit (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--frames", type=int, default=DEMO_SCENE["frames"])
    parser.add_argument("--height", type=int, default=DEMO_SCENE["height"])
    parser.add_argument("--width", type=int, default=DEMO_SCENE["width"])
    parser.add_argument("--objects", type=int, default=DEMO_SCENE["num_objects"])
    parser.add_argument("--effects", nargs="+", default=list(DEMO_SCENE["effects"]),
                        help="one of shadow/reflection/dust per object (default: the demo's)")
    parser.add_argument("--configs", nargs="+", choices=range(len(CONFIGS)), type=int,
                        help="indices of the configurations to run (default: all)")
    return parser.parse_args()


def main():
    args = parse_args()
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; choose another --out")
    if args.threads:
        torch.set_num_threads(args.threads)
    scene_args = dict(num_objects=args.objects, frames=args.frames, height=args.height, width=args.width,
                      effects=tuple(args.effects[:args.objects]))
    scene = make_scene(seed=args.seed, **scene_args)
    fit_kwargs = dict(preset=args.preset, steps=args.steps, seed=args.seed, device=args.device)
    rows = []
    names = list(CONFIGS)
    for index in args.configs if args.configs is not None else range(len(CONFIGS)):
        name = names[index]
        started = time.perf_counter()
        removal = effect_aware_removal(scene.composite, scene.masks, fit_kwargs=fit_kwargs, **CONFIGS[name])
        fitted = fit_layers(removal.solos, removal.plate.background, scene.masks, **fit_kwargs)
        seconds = time.perf_counter() - started
        quality = metrics.layer_quality(fitted.rgb, fitted.alpha, scene)
        row = {"config": name, "seconds": seconds, "fits": removal.rounds + 1,
               "plate_psnr": metrics.psnr(removal.plate.plate, scene.background[0]), "layers": quality}
        rows.append(row)
        print(f"\n{name}: {seconds:.0f} s, {row['fits']} fits, plate {row['plate_psnr']:.2f} dB")
        for i, q in enumerate(quality):
            print(f"  layer {i} ({q['effect_type']}): cross-talk {q['cross_talk']:.3f}  effect recall "
                  f"{q['effect_recall']:.3f}  effect alpha error {q['effect_alpha_error']:.3f}  false opacity "
                  f"{q['false_opacity']:.3f}  composite {q['composite_psnr']:.2f} dB")
    out.write_text(json.dumps({"scene": {"seed": args.seed, **{k: list(v) if isinstance(v, tuple) else v
                                                              for k, v in scene_args.items()}},
                               "fit": fit_kwargs, "threads": torch.get_num_threads(),
                               "machine": platform.processor() or platform.machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
