"""Save a preview grid of a synthetic scene: per row one frame, columns composite, clean background, each object's
layer (object + effect) on a checkerboard, and the depth video.

    python bench/render_synthetic_preview.py [out.png] [--seed 0] [--objects 3] [--camera static|pan]
"""
import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from omnimatte_core.synthetic import make_scene

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("out", nargs="?", default="docs/synthetic_scene.png", help="PNG path (never overwritten)")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--objects", type=int, default=3)
parser.add_argument("--camera", default="static", choices=["static", "pan"])
parser.add_argument("--frames", type=int, default=24)
parser.add_argument("--height", type=int, default=128)
parser.add_argument("--width", type=int, default=224)
parser.add_argument("--rows", type=int, default=3, help="how many frames to show, evenly spaced")
args = parser.parse_args()

out = Path(args.out)
if out.exists():
    raise SystemExit(f"{out} exists; refusing to overwrite it (pass another path)")

scene = make_scene(args.seed, args.objects, args.frames, args.height, args.width, camera=args.camera)
H, W = args.height, args.width
yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
checker = torch.where(((yy // 8 + xx // 8) % 2) == 0, 0.8, 0.6).expand(3, H, W)
depth_span = (scene.depth.min(), scene.depth.max())
gap = 2

rows = []
for t in np.linspace(0, args.frames - 1, args.rows).round().astype(int):
    tiles = [scene.composite[t], scene.background[t]]
    for i in range(args.objects):
        a = scene.layer_alpha[i, t]
        tiles.append(a * scene.layer_rgb[i, t] + (1 - a) * checker)
    d = (scene.depth[t] - depth_span[0]) / (depth_span[1] - depth_span[0]).clamp_min(1e-6)
    tiles.append((1 - d).expand(3, H, W))  # near = bright
    row = torch.ones(3, H, len(tiles) * (W + gap) - gap)
    for k, tile in enumerate(tiles):
        row[:, :, k * (W + gap):k * (W + gap) + W] = tile
    rows.append(row)
grid = torch.ones(3, len(rows) * (H + gap) - gap, rows[0].shape[2])
for k, row in enumerate(rows):
    grid[:, k * (H + gap):k * (H + gap) + H] = row

image = (grid.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
out.parent.mkdir(parents=True, exist_ok=True)
cv2.imwrite(str(out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): columns composite, background, "
      f"{args.objects} layers on checkerboard ({', '.join(scene.effect_types)}), depth; rows frames")
