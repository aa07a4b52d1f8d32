"""Synthetic effect-removal tuples from `omnimatte_core.synthetic` scenes (the paper's Kubric data, Sec. B).

One tuple: 1-6 objects, each with its effect (cast shadow, water reflection, dust trail), some of them stationary,
under a lighting change. A random non-empty subset of the objects is removed: the input is every layer over the
background, the target only the kept layers (with their effects) over the background, the trimask marks the removed
objects' masks *remove* (not their effects: finding those is the model's job) and the kept objects' masks *keep*.

`omnimatte_core.synthetic.make_scene` renders at most 3 objects, so scenes with more take the layers of a second
scene rendered with another seed at the same size and camera; they are composited over the first scene's background
in depth order. The water band sits at the same height in every scene, so a borrowed reflection still lies on water,
and a panning camera moves at the same speed in both. A stationary object is one layer frame held still in the
world (shifted with the camera when it pans). A lighting change is a smooth per-frame gain on everything,
input and target alike, so removal must not undo it.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from omnimatte_core.synthetic import PAN_EXTENT, composite_layers, make_scene

from .tuples import TrainingTuple, make_trimask

MAX_OBJECTS = 6
_SCENE_OBJECTS = 3  # make_scene's limit


def synthetic_tuple(
    seed: int,
    *,
    frames: int = 80,
    height: int = 128,
    width: int = 224,
    num_objects: int | None = None,
    camera: str | None = None,
    stationary_share: float = 0.25,
    lighting_change: float = 0.5,
    dilate: int = 5,
) -> TrainingTuple:
    """Render one synthetic tuple (category ``"synthetic"``).

    Args:
        seed: fixes everything; same arguments, same tuple.
        frames, height, width: clip size (height and width ≥ 16).
        num_objects: 1..6; None draws one uniformly.
        camera: ``"static"`` or ``"pan"``; None draws static with probability 0.7.
        stationary_share: probability that an object is held still.
        lighting_change: probability of a lighting change over the clip (a gain ramp or flicker of ±10..30 %).
        dilate: square dilation of the object masks in the trimask, pixels.

    Returns:
        `TrainingTuple` whose ``info`` records the seeds, objects, effects and which were removed.
    """
    rng = np.random.default_rng([seed, 12])
    if num_objects is None:
        num_objects = int(rng.integers(1, MAX_OBJECTS + 1))
    if not 1 <= num_objects <= MAX_OBJECTS:
        raise ValueError(f"num_objects: expected 1..{MAX_OBJECTS}, got {num_objects}")
    if camera is None:
        camera = "static" if rng.random() < 0.7 else "pan"

    # 1. Layers of one or two scenes (the first scene's background)
    counts = [min(num_objects, _SCENE_OBJECTS)] + ([num_objects - _SCENE_OBJECTS] if num_objects > 3 else [])
    scene_seeds = [int(rng.integers(0, 2**31 - 1)) for _ in counts]
    parts = []
    for scene_seed, count in zip(scene_seeds, counts):
        effects = [str(e) for e in rng.choice(("shadow", "reflection", "dust"), size=count)]
        parts.append(make_scene(scene_seed, count, frames, height, width, camera=camera, effects=effects))
    background = parts[0].background
    layer_rgb = torch.cat([p.layer_rgb for p in parts])
    layer_alpha = torch.cat([p.layer_alpha for p in parts])
    masks = torch.cat([p.masks for p in parts])[:, :, 0] > 0.5  # [N,T,H,W]
    depth = torch.cat([p.object_depth for p in parts], dim=1)  # [T,N]
    effects = [e for p in parts for e in p.effect_types]

    # 2. Stationary objects: one frame of the layer held still in the world
    stationary = [bool(rng.random() < stationary_share) for _ in range(num_objects)]
    pan_px = PAN_EXTENT * width if camera == "pan" else 0.0
    for index in np.flatnonzero(stationary):
        held = int(rng.integers(0, frames))
        layer_rgb[index], layer_alpha[index], masks[index] = _hold_still(
            layer_rgb[index], layer_alpha[index], masks[index], held, pan_px)
        depth[:, index] = depth[held, index]
    order = torch.argsort(depth, dim=1, stable=True)

    # 3. Which objects go; input and target
    remove = np.zeros(num_objects, bool)
    remove[rng.choice(num_objects, size=int(rng.integers(1, num_objects + 1)), replace=False)] = True
    input_video = composite_layers(layer_rgb, layer_alpha, background, order)
    kept_alpha = layer_alpha * torch.from_numpy(~remove).float().view(-1, 1, 1, 1, 1)
    target_video = composite_layers(layer_rgb, kept_alpha, background, order)

    # 4. Lighting change, the same on input and target
    gain = _lighting_gain(rng, frames) if rng.random() < lighting_change else None
    if gain is not None:
        input_video = (input_video * gain).clamp(0, 1)
        target_video = (target_video * gain).clamp(0, 1)

    trimask, keep_masks = make_trimask(masks[torch.from_numpy(remove)], masks[torch.from_numpy(~remove)], dilate)
    info = {
        "source": "omnimatte_core.synthetic",
        "seed": seed,
        "scene_seeds": scene_seeds,
        "camera": camera,
        "effects": effects,
        "stationary": stationary,
        "removed": [int(i) for i in np.flatnonzero(remove)],
        "kept": [int(i) for i in np.flatnonzero(~remove)],
        "lighting_change": gain is not None,
    }
    return TrainingTuple(
        category="synthetic",
        input_video=input_video.permute(0, 2, 3, 1).contiguous(),
        trimask=trimask,
        target_video=target_video.permute(0, 2, 3, 1).contiguous(),
        keep_masks=keep_masks,
        info=info,
    )


def _hold_still(rgb, alpha, mask, held: int, pan_px: float):
    """Layer ``rgb [T,3,H,W]``, ``alpha [T,1,H,W]``, ``mask [T,H,W]`` frozen at frame `held`; with a panning camera
    (the view slides right by `pan_px` over the clip) the frozen frame moves left in view by the camera's travel."""
    frames = rgb.shape[0]
    stack = torch.cat([rgb[held], alpha[held], mask[held, None].float()])[None].expand(frames, -1, -1, -1)
    if pan_px:
        s = torch.linspace(0, 1, frames) if frames > 1 else torch.zeros(1)
        shift = pan_px * (s - s[held])  # pixels the camera moved since the held frame
        width, height = rgb.shape[-1], rgb.shape[-2]
        theta = torch.zeros(frames, 2, 3)
        theta[:, 0, 0] = 1
        theta[:, 1, 1] = 1
        theta[:, 0, 2] = 2 * shift / width  # sample to the right: content moves left
        grid = F.affine_grid(theta, [frames, stack.shape[1], height, width], align_corners=False)
        stack = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    alpha_held = stack[:, 3:4].clamp(0, 1)
    return stack[:, :3].clamp(0, 1), alpha_held, stack[:, 4] > 0.5


def _lighting_gain(rng: np.random.Generator, frames: int) -> torch.Tensor:
    """Per-frame gain ``[T,1,1,1]``: a ramp (light dims or brightens) or a slow flicker, of 10-30 %."""
    s = np.linspace(0, 1, frames) if frames > 1 else np.zeros(1)
    strength = rng.uniform(0.1, 0.3) * rng.choice((-1.0, 1.0))
    if rng.random() < 0.5:
        gain = 1 + strength * s
    else:
        gain = 1 + strength * np.sin(2 * math.pi * rng.uniform(0.5, 2.0) * s + rng.uniform(0, 2 * math.pi))
    return torch.from_numpy(gain).float().view(-1, 1, 1, 1)
