"""Tuples from real footage (paper Sec. B): omnimatte reconstructions and tripod (locked-off) clips.

*Omnimatte*: a clip decomposed into layers (`omnimatte_core.layers.Layers`, e.g. a run folder written by
`omnimatte_core.export.export_layers`). The input is the **reconstruction from the layers**, not the original clip:
the background layer of an omnimatte is softer and not perfectly aligned with the original, and pairs of sharp inputs
with soft targets would teach the model to degrade the regions it should preserve. Composed from the same layers,
input and target share one quality. One tuple per job Casper runs at inference: remove every object (target = the
background layer) and, for several objects, keep one and remove the others (target = that layer over the background).

*Tripod*: a locked-off shot whose clean plate is known (filmed empty, or the scene before the objects entered). The
input is the clip, the target the plate, every object is removed.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from omnimatte_core.compositing import composite
from omnimatte_core.layers import Layers

from .tuples import TrainingTuple, make_trimask

# A layer pixel this opaque is taken as the object itself when the layers carry no masks (effects are translucent).
OBJECT_ALPHA = 0.95


def omnimatte_tuples(layers: Layers, *, dilate: int = 5, info: dict | None = None) -> list[TrainingTuple]:
    """The removal jobs of one decomposed clip as tuples (category ``"omnimatte"``).

    Args:
        layers: the fitted layers; ``layers.masks`` are the object masks when present, otherwise pixels with layer
            alpha ≥ `OBJECT_ALPHA`.
        dilate: square dilation of the masks in the trimask, pixels.
        info: extra description stored with each tuple (e.g. the run folder).

    Returns:
        ``[remove all]`` plus, for N > 1 layers, ``[keep i, remove the rest]`` for each i.
    """
    if not isinstance(layers, Layers):
        raise TypeError(f"layers: expected an omnimatte_core.layers.Layers, got {type(layers).__name__}")
    layers = layers.replace(rgb=layers.rgb.float().cpu(), alpha=layers.alpha.float().cpu(),
                            background=layers.background.float().cpu(),
                            masks=None if layers.masks is None else layers.masks.float().cpu())
    masks = (layers.masks if layers.masks is not None else (layers.alpha >= OBJECT_ALPHA).float())[:, :, 0] > 0.5
    input_video = composite(layers.rgb, layers.alpha, layers.background, layers.order)
    count = layers.num_layers
    jobs = [("background", [])] + ([(f"solo_{i}", [i]) for i in range(count)] if count > 1 else [])
    tuples = []
    for name, kept in jobs:
        keep = torch.zeros(count, dtype=torch.bool)
        keep[kept] = True
        target = composite(layers.rgb, layers.alpha * keep.float().view(-1, 1, 1, 1, 1), layers.background,
                           layers.order)
        trimask, keep_masks = make_trimask(masks[~keep], masks[keep], dilate)
        tuples.append(TrainingTuple(
            category="omnimatte",
            input_video=input_video.permute(0, 2, 3, 1).clamp(0, 1).contiguous(),
            trimask=trimask,
            target_video=target.permute(0, 2, 3, 1).clamp(0, 1).contiguous(),
            keep_masks=keep_masks,
            info={"source": "omnimatte", "job": name, "layers": list(layers.names),
                  "masks_from": "layers.masks" if layers.masks is not None else f"alpha>={OBJECT_ALPHA}",
                  **(info or {})},
        ))
    return tuples


def tripod_tuple(video: torch.Tensor, masks: torch.Tensor, plate: torch.Tensor, *, dilate: int = 5,
                 info: dict | None = None) -> TrainingTuple:
    """A locked-off clip and its known clean plate as a tuple (category ``"tripod"``).

    Args:
        video: ``[T,H,W,3]`` float 0..1.
        masks: ``[N,T,H,W]`` (or ``[T,H,W]``) object masks, > 0.5 = object; every object is removed.
        plate: ``[H,W,3]`` (one still) or ``[T,H,W,3]`` (a plate video) float 0..1, the scene without the objects.
        dilate: square dilation of the masks in the trimask, pixels.
        info: extra description stored with the tuple.
    """
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"video: expected [T,H,W,3], got {tuple(video.shape)}")
    frames, height, width = video.shape[:3]
    masks = masks[None] if masks.ndim == 3 else masks
    if masks.ndim != 4 or tuple(masks.shape[1:]) != (frames, height, width):
        raise ValueError(f"masks: expected [N,{frames},{height},{width}], got {tuple(masks.shape)}")
    if plate.ndim == 3:
        plate = plate[None].expand(frames, -1, -1, -1)
    if tuple(plate.shape) != tuple(video.shape):
        raise ValueError(f"plate: expected [H,W,3] or [T,H,W,3] matching the video {tuple(video.shape)}, "
                         f"got {tuple(plate.shape)}")
    trimask, keep_masks = make_trimask(masks > 0.5, torch.zeros(0, frames, height, width, dtype=torch.bool), dilate)
    return TrainingTuple(category="tripod", input_video=video.float().clamp(0, 1).contiguous(), trimask=trimask,
                         target_video=plate.float().clamp(0, 1).contiguous(), keep_masks=keep_masks,
                         info={"source": "tripod", **(info or {})})


def read_exported_layers(folder) -> Layers:
    """Read a run folder written by `omnimatte_core.export.export_layers` (its PNG sequences) back as `Layers`.

    Object masks are not exported, so the result has ``masks=None`` (see `omnimatte_tuples`).
    """
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder}: no manifest.json; expected a run folder written by export_layers")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != "generative-omnimatte-layers":
        raise ValueError(f"{manifest_path}: format {manifest.get('format')!r}, expected 'generative-omnimatte-layers'")
    frames = manifest["frames"]
    if "png" not in manifest["background"]:
        raise ValueError(f"{folder}: exported without PNG sequences; re-export with the 'png' format")
    background = _read_png_sequence(folder, manifest["background"]["png"], frames, 3)
    entries = sorted(manifest["layers"], key=lambda entry: entry["index"])
    rgba = torch.stack([_read_png_sequence(folder, entry["files"]["png"], frames, 4) for entry in entries])
    names = [entry["name"] for entry in entries]
    order = None
    if manifest.get("order_front_to_back"):
        order = torch.tensor([[names.index(name) for name in row] for row in manifest["order_front_to_back"]])
    return Layers(rgb=rgba[:, :, :3], alpha=rgba[:, :, 3:], background=background, order=order, names=names,
                  fps=manifest["fps"])


def _read_png_sequence(folder: Path, pattern: str, frames: int, channels: int) -> torch.Tensor:
    """``[T,C,H,W]`` float 0..1 from ``pattern % index`` PNGs (RGB or RGBA)."""
    images = []
    for index in range(frames):
        path = folder / (pattern % index)
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise FileNotFoundError(f"missing or unreadable frame {path}")
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        order = [2, 1, 0, 3][:channels] if image.shape[2] >= channels else None
        if order is None:
            raise ValueError(f"{path}: {image.shape[2]} channels, expected {channels}")
        image = image[..., order]
        scale = 65535.0 if image.dtype == np.uint16 else 255.0
        images.append(torch.from_numpy(image.astype(np.float32) / scale).permute(2, 0, 1))
    return torch.stack(images)
