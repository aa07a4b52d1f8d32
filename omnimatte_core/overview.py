"""The overview picture of a decomposition: per row a frame — input | background | each layer over a checkerboard |
recomposite — with a caption strip, as the main command writes it next to the exported layers."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from . import export
from .layers import Layers

__all__ = ["write_figure"]


def write_figure(video: torch.Tensor, layers: Layers, recomposite: torch.Tensor, path: Path,
                 frames: int = 2) -> Path:
    """One PNG: per row a frame — input | background | each layer over a checkerboard | recomposite.

    Never overwrites: an existing ``path`` raises ``FileExistsError``."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{str(path)!r} exists; choose another --figure path (nothing was overwritten)")
    t, _, h, w = video.shape
    picks = [round(i * (t - 1) / max(frames, 1)) for i in range(1, frames + 1)] if t > 1 else [0]
    picks = sorted(set(min(t - 1, max(0, p - (t // (2 * frames)))) for p in picks))
    checker = export.checkerboard(h, w, max(4, h // 16))
    gap = torch.ones(3, h, 2)
    rows = []
    for f in picks:
        tiles = [video[f], layers.background[f]]
        tiles += [layers.alpha[i, f] * layers.rgb[i, f] + (1 - layers.alpha[i, f]) * checker
                  for i in range(layers.num_layers)]
        tiles.append(recomposite[f])
        row = []
        for tile in tiles:
            row += [tile.float().clamp(0, 1), gap]
        rows += [torch.cat(row[:-1], dim=2), torch.ones(3, 2, row[0].shape[-1] * len(tiles) + 2 * (len(tiles) - 1))]
    image = export.to_uint8(torch.cat(rows[:-1], dim=1))
    # A caption strip over the columns, so the picture explains itself in the README.
    captions = ["input", "background", *[f"layer {name}" for name in layers.names], "recomposite"]
    header = np.full((18, image.shape[1], 3), 255, np.uint8)
    for j, caption in enumerate(captions):
        cv2.putText(header, caption[: max(4, w // 7)], (j * (w + 2) + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    image = np.concatenate([header, image], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {str(path)!r}")
    return path
