"""Time synthetic scene generation (CPU) and, optionally, moving the scene to a device.

    python bench/synthetic_speed.py [--device cuda] [--out results.json] [--repeats 3]

Prints a table and writes the numbers as JSON (the output file is never overwritten).
"""
import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

from omnimatte_core.synthetic import make_scene

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--device", default="cpu", help="also time scene.to(device) (generation itself is CPU)")
parser.add_argument("--out", default=None, help="JSON path for the results (must not exist)")
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--cases", default="24x128x224x3,24x128x224x2:pan,85x384x672x3",
                    help="comma-separated FRAMESxHEIGHTxWIDTHxOBJECTS[:pan]")
args = parser.parse_args()

out = Path(args.out) if args.out else None
if out is not None and out.exists():
    raise SystemExit(f"{out} exists; refusing to overwrite it")

make_scene(0, 1, 2, 16, 16)  # load the photos and warm up torch once, outside the timings
rows = []
for case in args.cases.split(","):
    dims, _, camera = case.partition(":")
    frames, height, width, objects = (int(v) for v in dims.split("x"))
    camera = camera or "static"
    seconds, to_device = [], []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        scene = make_scene(repeat, objects, frames, height, width, camera=camera)
        seconds.append(time.perf_counter() - start)
        if args.device != "cpu":
            start = time.perf_counter()
            scene.to(args.device)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            to_device.append(time.perf_counter() - start)
        del scene
    rows.append({"frames": frames, "height": height, "width": width, "objects": objects, "camera": camera,
                 "generate_s_min": min(seconds), "generate_s_median": sorted(seconds)[len(seconds) // 2],
                 "to_device_s_min": min(to_device) if to_device else None})

print(f"{'case':>28} {'generate min s':>15} {'median s':>9} {'to ' + args.device + ' s':>10}")
for r in rows:
    case = f"{r['frames']}x{r['height']}x{r['width']} N={r['objects']} {r['camera']}"
    dev = f"{r['to_device_s_min']:.3f}" if r["to_device_s_min"] is not None else "-"
    print(f"{case:>28} {r['generate_s_min']:15.3f} {r['generate_s_median']:9.3f} {dev:>10}")
peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(f"peak resident memory {peak_gib:.2f} GiB, torch threads {torch.get_num_threads()}")
if out is not None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "device": args.device, "torch": torch.__version__,
                               "threads": torch.get_num_threads(),
                               "machine": platform.processor() or platform.machine(),
                               "peak_rss_gib": peak_gib}, indent=2))
    print(f"wrote {out}")
