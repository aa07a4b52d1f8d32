"""Synthetic layered videos with exact ground truth, for tests and benchmarks.

A scene is a real photograph (shipped with scikit-image) as background, a water band along its bottom, and 1-3
textured blobs moving along smooth paths. Every object owns one effect that a mask-only method would miss:

- ``"shadow"``: a soft cast shadow on the ground below the object (black, alpha about 0.5, blurred, sheared);
- ``"reflection"``: the object mirrored in the water band (alpha about 0.45, fading with depth into the water);
- ``"dust"``: a brownish translucent trail left behind along the object's path (alpha up to 0.4).

Everything is rendered analytically in world coordinates, so a panning camera moves background, objects and effects
consistently. Ground truth comes from the same layers that build the video, so recomposition is exact.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

EFFECT_TYPES = ("shadow", "reflection", "dust")
DEFAULT_EFFECTS = ("shadow", "reflection", "dust")  # object i gets DEFAULT_EFFECTS[i]
CAMERAS = ("static", "pan")
BACKGROUND_PHOTOS = ("coffee", "chelsea", "rocket")
TEXTURE_PHOTOS = ("astronaut", "immunohistochemistry", "chelsea", "coffee", "rocket")

WATER_LINE = 0.72  # water band starts at this fraction of the height
PAN_EXTENT = 0.12  # total camera travel over the clip, as a fraction of the width
BACKGROUND_DEPTH = (1.0, 0.9)  # depth at the top and at the bottom row of the background
_CHUNK_PIXELS = 1_000_000  # pixels rendered at once (frames x H x W); bounds memory, never changes the result


@dataclass
class SyntheticScene:
    """A synthetic video with its exact layer decomposition.

    All tensors are float32 on the CPU in 0..1 unless noted; N objects, T frames, H x W pixels.

    - ``background [T,3,H,W]``: the clean background (no object, no effect).
    - ``composite [T,3,H,W]``: all layers over the background, back to front by ``order``.
    - ``solos [N,T,3,H,W]``: background + object i + its effects only.
    - ``layer_rgb [N,T,3,H,W]`` (straight colour, 0 where alpha is 0), ``layer_alpha [N,T,1,H,W]``: the RGBA layer of
      object i including its effects; ``layer_alpha = object_alpha + effect_alpha * (1 - object_alpha)``.
    - ``object_alpha [N,T,1,H,W]``: the object alone (1 inside, 1-px antialiased edge).
    - ``masks [N,T,1,H,W]``: binary object masks, ``object_alpha > 0.5`` (no effect pixels).
    - ``effect_alpha [N,T,1,H,W]``: the effect alone; ``effect_types[i]`` names it ("shadow", "reflection", "dust").
    - ``order [T,N]`` int64: per frame object indices front to back (``order[t,0]`` nearest).
    - ``object_depth [T,N]``: per-frame object depth, larger = farther (0..1, background is farther than all).
    - ``depth [T,1,H,W]``: depth video, larger = farther; equals ``object_depth`` inside the nearest covering mask.
    - ``camera``: "static" or "pan"; ``fps``: nominal frame rate for export.
    """

    background: torch.Tensor
    composite: torch.Tensor
    solos: torch.Tensor
    layer_rgb: torch.Tensor
    layer_alpha: torch.Tensor
    object_alpha: torch.Tensor
    masks: torch.Tensor
    effect_alpha: torch.Tensor
    effect_types: list[str]
    order: torch.Tensor
    object_depth: torch.Tensor
    depth: torch.Tensor
    camera: str
    fps: float = 24.0
    clean_background: torch.Tensor | None = None
    """Set by :func:`degrade_scene`: the exact background before degradation (``background`` is then degraded)."""
    clean_solos: torch.Tensor | None = None
    """Set by :func:`degrade_scene`: the exact solo videos before degradation (``solos`` are then degraded)."""
    degradation: "Degradation | None" = None

    @property
    def true_background(self) -> torch.Tensor:
        """The exact background, whether or not the scene's inputs were degraded."""
        return self.background if self.clean_background is None else self.clean_background

    @property
    def true_solos(self) -> torch.Tensor:
        """The exact solo videos, whether or not the scene's inputs were degraded."""
        return self.solos if self.clean_solos is None else self.clean_solos

    @property
    def num_objects(self) -> int:
        return int(self.layer_alpha.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.background.shape[0])

    def to(self, device) -> "SyntheticScene":
        """A copy with every tensor moved to ``device`` (other fields shared)."""
        values = {}
        for field in fields(self):
            value = getattr(self, field.name)
            values[field.name] = value.to(device) if isinstance(value, torch.Tensor) else value
        return SyntheticScene(**values)


@dataclass
class _ObjectSpec:
    """Shape, path and look of one object; lengths in pixels, time ``s`` in 0..1 over the clip."""

    effect: str
    semi_axes: tuple[float, float]  # (a, b): horizontal and vertical semi-axis before rotation
    wobble: tuple[float, int, float]  # (amplitude, lobes, phase) of the radial outline wobble
    cross_x: float  # world x at s = cross_s
    cross_s: float
    speed: float  # signed horizontal world speed, pixels per unit s
    lane_y: float
    bob: tuple[float, float, float]  # (amplitude px, cycles per clip, phase) of the vertical bobbing
    spin: tuple[float, float]  # (amplitude rad, phase) of the slow rotation
    texture: torch.Tensor  # [3,h,w]
    grain: np.ndarray | None = None  # dust only: H x world-width density pattern fixed in the world

    def center(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.cross_x + self.speed * (s - self.cross_s)
        y = self.lane_y + self.bob[0] * np.sin(2 * math.pi * self.bob[1] * s + self.bob[2])
        return x, y

    def angle(self, s: np.ndarray) -> np.ndarray:
        return self.spin[0] * np.sin(2 * math.pi * 0.5 * s + self.spin[1])

    def max_vertical_extent(self) -> float:
        a, b = self.semi_axes
        return (1 + self.wobble[0]) * math.hypot(b, a * math.sin(self.spin[0]))


def make_scene(
    seed: int = 0,
    num_objects: int = 2,
    frames: int = 24,
    height: int = 128,
    width: int = 224,
    *,
    camera: str = "static",
    effects: Sequence[str] | None = None,
) -> SyntheticScene:
    """Render a synthetic layered video and its ground truth (see :class:`SyntheticScene` for every field's shape).

    - ``seed`` (int >= 0) fixes everything: photos, crops, shapes, paths, depths. Same arguments, same tensors.
    - ``num_objects`` 1..3; ``frames`` >= 1; ``height``, ``width`` >= 16 pixels (any aspect ratio).
    - ``camera``: "static" (the background is the same every frame) or "pan" (the view slides right by 12 % of the
      width over the clip, sub-pixel; objects and the dust trail live in the same world and move consistently).
    - ``effects``: one of "shadow", "reflection", "dust" per object (default: object 0 shadow, 1 reflection, 2 dust).

    Objects 0 and 1 pass each other mid-clip and their depths cross there, so ``order`` swaps while they overlap.
    Objects are about 30 % of the shorter side wide. 24 frames of 128x224 with 3 objects take a fraction of a second
    on one CPU core. Raises ``ValueError`` naming the bad argument.
    """
    # 1. Check inputs
    effect_list = _check_inputs(seed, num_objects, frames, height, width, camera, effects)
    rng = np.random.default_rng(seed)

    # 2. Camera, world, objects, depths. Every random draw happens here, before rendering, so chunked rendering
    #    cannot change the result. The world is wider than the view by the camera's travel.
    s = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    pan_px = PAN_EXTENT * width if camera == "pan" else 0.0
    camera_x = pan_px * s
    world_width = width + int(math.ceil(pan_px)) + 2
    water_row = int(round(WATER_LINE * height))
    world, photo_name = _world_image(rng, height, world_width, water_row)
    specs = _object_specs(rng, effect_list, height, width, water_row, pan_px, world_width, photo_name)
    object_depth = _object_depths(rng, specs, s)
    order = torch.argsort(object_depth, dim=1, stable=True)

    # 3. Render in chunks of frames (full-size temporaries of a long HD clip would need many GB), and within a chunk
    #    only the window that holds an object and its effect: everything outside it is exactly 0
    n = len(specs)
    background = _view_background(world, camera_x, width)
    object_alpha = torch.zeros(n, frames, 1, height, width)
    effect_alpha = torch.zeros(n, frames, 1, height, width)
    layer_alpha = torch.zeros(n, frames, 1, height, width)
    layer_rgb = torch.zeros(n, frames, 3, height, width)
    solos = background.unsqueeze(0).repeat(n, 1, 1, 1, 1)
    composite = torch.empty(frames, 3, height, width)
    ys = torch.arange(height, dtype=torch.float32).view(1, height, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, width)
    chunk = max(1, _CHUNK_PIXELS // (height * width))
    for first in range(0, frames, chunk):
        span = slice(first, min(frames, first + chunk))
        for index, spec in enumerate(specs):
            rows, cols, o_alpha, o_rgb, e_alpha, e_rgb = _render_object_and_effect(
                spec, s[span], camera_x[span], xs, ys, water_row)
            # the layer is the object over its effect, in straight (not premultiplied) colour
            l_alpha = o_alpha + e_alpha * (1 - o_alpha)
            premultiplied = o_alpha * o_rgb + (1 - o_alpha) * e_alpha * e_rgb
            l_rgb = torch.where(l_alpha > 0, premultiplied / l_alpha.clamp_min(1e-12), torch.zeros(())).clamp(0, 1)
            window = (index, span, slice(None), rows, cols)
            object_alpha[window] = o_alpha
            effect_alpha[window] = e_alpha
            layer_alpha[window] = l_alpha
            layer_rgb[window] = l_rgb
            # 4. Ground truth derived from the stored layers: each layer alone over the background ...
            solos[window] = l_alpha * l_rgb + (1 - l_alpha) * solos[window]
        # ... and all layers back to front in depth order
        composite[span] = composite_layers(layer_rgb[:, span], layer_alpha[:, span], background[span], order[span])
    masks = (object_alpha > 0.5).float()
    depth = _depth_video(background.shape, masks, object_depth, order)

    return SyntheticScene(
        background=background,
        composite=composite,
        solos=solos,
        layer_rgb=layer_rgb,
        layer_alpha=layer_alpha,
        object_alpha=object_alpha,
        masks=masks,
        effect_alpha=effect_alpha,
        effect_types=list(effect_list),
        order=order,
        object_depth=object_depth,
        depth=depth,
        camera=camera,
    )


def composite_layers(layer_rgb: torch.Tensor, layer_alpha: torch.Tensor, background: torch.Tensor,
                     order: torch.Tensor) -> torch.Tensor:
    """Over-composite layers ``[N,T,3,H,W]`` (straight RGB, alpha ``[N,T,1,H,W]``) on ``background [T,3,H,W]``
    back to front, following ``order [T,N]`` (front to back per frame). Returns ``[T,3,H,W]``."""
    frames = torch.arange(background.shape[0])
    out = background.clone()
    for rank in reversed(range(order.shape[1])):
        index = order[:, rank]
        alpha = layer_alpha[index, frames]
        out = alpha * layer_rgb[index, frames] + (1 - alpha) * out
    return out


def _check_inputs(seed, num_objects, frames, height, width, camera, effects) -> list[str]:
    for name, value in (("seed", seed), ("num_objects", num_objects), ("frames", frames), ("height", height),
                        ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 1 <= num_objects <= 3:
        raise ValueError(f"num_objects must be 1, 2 or 3, got {num_objects}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if height < 16 or width < 16:
        raise ValueError(f"height and width must be >= 16 pixels, got height={height}, width={width}")
    if camera not in CAMERAS:
        raise ValueError(f"camera must be one of {CAMERAS}, got {camera!r}")
    if effects is None:
        return list(DEFAULT_EFFECTS[:num_objects])
    if isinstance(effects, str) or len(effects) != num_objects:
        raise ValueError(f"effects must be a list of {num_objects} effect names (one per object), got {effects!r}")
    for effect in effects:
        if effect not in EFFECT_TYPES:
            raise ValueError(f"effects entries must be in {EFFECT_TYPES}, got {effect!r}")
    return list(effects)


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as float32 HxWx3 in 0..1 (cached; callers must not modify it)."""
    import skimage.data  # imported lazily: only scene generation needs it

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3].astype(np.float32) / 255.0
    image.setflags(write=False)
    return image


def _cover_crop(image: np.ndarray, height: int, width: int, rng: np.random.Generator, zoom: float = 1.0) -> np.ndarray:
    """Resize ``image`` to cover ``height x width`` (times ``zoom``) and crop a random window of that size."""
    scale = max(height / image.shape[0], width / image.shape[1]) * zoom
    new_h = max(height, int(math.ceil(image.shape[0] * scale)))
    new_w = max(width, int(math.ceil(image.shape[1] * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    top = int(rng.integers(0, new_h - height + 1))
    left = int(rng.integers(0, new_w - width + 1))
    return resized[top:top + height, left:left + width]


def _world_image(rng: np.random.Generator, height: int, world_width: int, water_row: int) -> tuple[np.ndarray, str]:
    """The world background HxWwx3 (and the photo's name): a photo above ``water_row``, below it water mirroring the
    photo with ripples."""
    photo_name = BACKGROUND_PHOTOS[int(rng.integers(len(BACKGROUND_PHOTOS)))]
    photo = _photo(photo_name)
    world = np.ascontiguousarray(_cover_crop(photo, height, world_width, rng, zoom=float(rng.uniform(1.0, 1.3))))
    rows = height - water_row
    mirrored = world[np.clip(2 * water_row - 1 - np.arange(water_row, height), 0, height - 1)]
    mirrored = cv2.GaussianBlur(mirrored, (0, 0), sigmaX=max(0.6, 0.004 * world_width), sigmaY=0.6)
    depth_in_water = (np.arange(rows, dtype=np.float32) / max(rows, 1))[:, None, None]
    water_colour = np.array([0.12, 0.28, 0.38], np.float32) * (1 - 0.4 * depth_in_water)
    ripple_period = max(3.0, 0.035 * height)
    ripples = 1 + 0.06 * np.sin(2 * math.pi * np.arange(rows, dtype=np.float32) / ripple_period)[:, None, None]
    world[water_row:] = np.clip((0.45 * mirrored + 0.55 * water_colour) * ripples, 0, 1)
    return world, photo_name


def _view_background(world: np.ndarray, camera_x: np.ndarray, width: int) -> torch.Tensor:
    """Frames ``[T,3,H,W]`` seen through a ``width``-wide window starting at ``camera_x[t]`` (sub-pixel)."""
    frames = []
    for shift in camera_x:
        if shift == 0:
            view = world[:, :width]
        else:
            matrix = np.array([[1, 0, shift], [0, 1, 0]], np.float32)
            view = cv2.warpAffine(world, matrix, (width, world.shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REFLECT)
        frames.append(torch.from_numpy(np.ascontiguousarray(view)).permute(2, 0, 1))
    return torch.stack(frames).clamp(0, 1)


def _object_specs(rng, effect_list, height, width, water_row, pan_px, world_width, background_photo
                  ) -> list[_ObjectSpec]:
    """Shapes, paths and looks: objects 0 and 1 pass each other mid-clip; lanes depend on the object's effect."""
    count = len(effect_list)
    size = min(height, width) * (0.85 if count == 3 else 1.0)
    texture_photos = [name for name in TEXTURE_PHOTOS if name != background_photo]
    cross_s = 0.5 + float(rng.uniform(-0.08, 0.08))
    cross_x = width * float(rng.uniform(0.42, 0.58)) + 0.5 * pan_px * cross_s
    specs = []
    for index, effect in enumerate(effect_list):
        a = size * float(rng.uniform(0.13, 0.16))
        b = size * float(rng.uniform(0.11, 0.14))
        wobble = (float(rng.uniform(0.04, 0.09)), int(rng.integers(2, 5)), float(rng.uniform(0, 2 * math.pi)))
        spin = (float(rng.uniform(0.05, 0.15)), float(rng.uniform(0, 2 * math.pi)))
        bob = (0.02 * height * float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.5, 1.2)),
               float(rng.uniform(0, 2 * math.pi)))
        direction = 1.0 if index % 2 == 0 else -1.0
        # objects drift with half the camera speed so a pan shows parallax between them and the background
        speed = direction * width * float(rng.uniform(0.45, 0.6)) + 0.5 * pan_px
        spec = _ObjectSpec(effect, (a, b), wobble, cross_x, cross_s, speed, 0.0, bob, spin,
                           _object_texture(rng, texture_photos[index % len(texture_photos)], a, b))
        # a reflection needs the object just above the water; a shadow falls below the object; dust rides high
        reflection_lane = water_row - spec.max_vertical_extent() - bob[0] - max(1.0, 0.02 * height)
        if effect == "reflection":
            spec.lane_y = reflection_lane
        elif effect == "shadow":
            spec.lane_y = reflection_lane - 1.2 * b
        else:
            spec.lane_y = 0.22 * height
            # a fixed grain pattern in world space, so the dust texture stays put when the camera pans
            coarse = rng.uniform(0.6, 1.0, (max(4, height // 8), max(4, world_width // 8))).astype(np.float32)
            spec.grain = cv2.resize(coarse, (world_width, height), interpolation=cv2.INTER_CUBIC)
        if index == 2:
            # the third object travels its own lane more slowly and starts far enough from the edge that its
            # trail (behind it, on the left) is in view from the first frame
            spec.speed = 0.7 * (spec.speed - 0.5 * pan_px) + 0.5 * pan_px
            spec.cross_x = width * float(rng.uniform(0.5, 0.65)) + 0.5 * pan_px * 0.5
            spec.cross_s = 0.5
        specs.append(spec)
    return specs


def _object_texture(rng, photo_name: str, a: float, b: float) -> torch.Tensor:
    """A photo patch ``[3,h,w]`` covering the object's bounding box (with margin)."""
    photo = _photo(photo_name)
    tex_h, tex_w = max(8, int(math.ceil(2.4 * b))), max(8, int(math.ceil(2.4 * a)))
    patch = _cover_crop(photo, tex_h, tex_w, rng, zoom=float(rng.uniform(1.5, 3.0)))
    return torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1).float()


def _silhouette(u: torch.Tensor, v: torch.Tensor, spec: _ObjectSpec) -> torch.Tensor:
    """Alpha ``[T,H,W]`` of the wobbly ellipse at object coordinates (u, v) in pixels, with a 1-px antialiased edge.

    The edge uses a first-order signed distance (implicit value / its pixel gradient), so it stays 1 px wide even when
    (u, v) are a squashed or sheared map of the screen (the cast shadow)."""
    a, b = spec.semi_axes
    amplitude, lobes, phase = spec.wobble
    un, vn = u / a, v / b
    implicit = torch.sqrt(un * un + vn * vn) - (1 + amplitude * torch.sin(lobes * torch.atan2(vn, un) + phase))
    grad_y, grad_x = torch.gradient(implicit, dim=(1, 2))
    distance = implicit / torch.sqrt(grad_x * grad_x + grad_y * grad_y).clamp_min(1e-6)
    return (0.5 - distance).clamp(0, 1)


def _rotate(dx: torch.Tensor, dy: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = torch.cos(theta), torch.sin(theta)
    return cos * dx + sin * dy, -sin * dx + cos * dy


def _render_object(spec, dx, dy, theta) -> tuple[torch.Tensor, torch.Tensor]:
    """Object alpha ``[T,H,W]`` and straight colour ``[T,3,H,W]`` (defined everywhere: texture clamps at its border)."""
    u, v = _rotate(dx, dy, theta)
    alpha = _silhouette(u, v, spec)
    a, b = spec.semi_axes
    grid = torch.stack((u / (1.2 * a), v / (1.2 * b)), dim=-1)  # texture moves and turns with the object
    texture = spec.texture.unsqueeze(0).expand(grid.shape[0], -1, -1, -1)
    rgb = F.grid_sample(texture, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # soft shading from an upper-left light makes the blob read as a rounded solid
    radial = ((u / a) ** 2 + (v / b) ** 2).clamp(max=1)
    highlight = torch.exp(-(((u / a) + 0.35) ** 2 + ((v / b) + 0.4) ** 2) / 0.08)
    shade = (0.7 + 0.3 * (1 - radial)).unsqueeze(1)
    rgb = (rgb * shade + 0.25 * highlight.unsqueeze(1)).clamp(0, 1)
    return alpha, rgb


# Cast shadow geometry, in units of the object's semi-axes (a, b): centre 1.3 b below and 0.5 a right of the object,
# the silhouette squashed to 36 % height, stretched 135 % wide, sheared right, blurred by 0.12 b, alpha 0.55.
_SHADOW_DROP, _SHADOW_SHIFT, _SHADOW_SQUASH, _SHADOW_STRETCH, _SHADOW_SHEAR = 1.3, 0.5, 0.36, 1.35, 0.8
_SHADOW_BLUR, _SHADOW_ALPHA = 0.12, 0.55
_REFLECTION_ALPHA = 0.45
_DUST_PUFFS, _DUST_ALPHA_MAX = 7, 0.4
_DUST_COLOUR = (0.58, 0.46, 0.32)


def _render_object_and_effect(spec, s, camera_x, xs, ys, water_row):
    """Render one object and its effect at clip times ``s`` (C frames) seen from camera offsets ``camera_x``.

    Returns ``(rows, cols, object_alpha [C,1,h,w], object_rgb [C,3,h,w], effect_alpha [C,1,h,w], effect_rgb)``
    for the window ``rows x cols`` (slices) that holds the object and its effect in all C frames; everything
    outside it is exactly 0, and the values inside do not depend on the window. ``effect_rgb`` broadcasts to
    ``[C,3,h,w]``."""
    height, width = ys.shape[1], xs.shape[2]
    cx, cy = spec.center(s)
    cx = cx - camera_x
    top, bottom, left, right = _render_window(spec, s, camera_x, cx, cy, height, width, water_row)
    # an object entirely out of view still gets a 2x2 window (its alpha there is 0), so every step sees valid shapes
    top, left = min(top, height - 2), min(left, width - 2)
    bottom, right = max(bottom, top + 2), max(right, left + 2)
    win_xs, win_ys = xs[..., left:right], ys[:, top:bottom]
    dx = win_xs - torch.from_numpy(cx).float().view(-1, 1, 1)
    dy = win_ys - torch.from_numpy(cy).float().view(-1, 1, 1)
    theta = torch.from_numpy(spec.angle(s)).float().view(-1, 1, 1)
    alpha, rgb = _render_object(spec, dx, dy, theta)
    if spec.effect == "shadow":
        e_alpha, e_rgb = _shadow(spec, dx, dy, theta), torch.zeros(1, 3, 1, 1)
    elif spec.effect == "reflection":
        e_alpha, e_rgb = _reflection(alpha, rgb, water_row, top, height)
    else:
        e_alpha = _dust(spec, s, camera_x, win_xs, win_ys, top, left)
        e_rgb = torch.tensor(_DUST_COLOUR).view(1, 3, 1, 1)
    return slice(top, bottom), slice(left, right), alpha.unsqueeze(1), rgb, e_alpha.unsqueeze(1), e_rgb


def _render_window(spec, s, camera_x, cx, cy, height, width, water_row) -> tuple[int, int, int, int]:
    """Pixel bounds (top, bottom, left, right), clipped to the frame, that contain the object and its effect over
    the frames at times ``s``, with a margin where the antialiased edge and the blur have fallen to exactly 0."""
    a, b = spec.semi_axes
    radius = (1 + spec.wobble[0]) * max(a, b) + 2  # any rotation of the silhouette fits in this circle
    boxes = [(cy.min() - radius, cy.max() + radius, cx.min() - radius, cx.max() + radius)]
    if spec.effect == "shadow":
        margin = 4 * max(0.5, _SHADOW_BLUR * b) + 2  # OpenCV's Gaussian kernel reaches 4 sigma
        half_h = _SHADOW_SQUASH * radius + margin
        half_w = _SHADOW_STRETCH * radius * (1 + _SHADOW_SHEAR * _SHADOW_SQUASH) + margin
        sx, sy = cx + _SHADOW_SHIFT * a, cy + _SHADOW_DROP * b
        boxes.append((sy.min() - half_h, sy.max() + half_h, sx.min() - half_w, sx.max() + half_w))
    elif spec.effect == "reflection":
        # the mirror image of the object's box; the box itself stays in the window because the mirror reads it
        boxes.append((boxes[0][0], 2 * water_row - boxes[0][0] + 1, boxes[0][2], boxes[0][3]))
    else:
        for px, py, puff_radius, _ in _dust_puffs(spec, s, camera_x):
            reach = 3 * puff_radius + 1
            boxes.append((py.min() - reach, py.max() + reach, px.min() - reach, px.max() + reach))
    top = max(0, int(math.floor(min(box[0] for box in boxes))))
    bottom = min(height, int(math.ceil(max(box[1] for box in boxes))) + 1)
    left = max(0, int(math.floor(min(box[2] for box in boxes))))
    right = min(width, int(math.ceil(max(box[3] for box in boxes))) + 1)
    return top, bottom, left, right


def _blur_frames(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``[T,H,W]`` frames (all frames in one OpenCV call, 512 channels at a time)."""
    array = frames.permute(1, 2, 0).contiguous().numpy()
    chunks = [cv2.GaussianBlur(np.ascontiguousarray(array[..., i:i + 512]), (0, 0), sigma,
                               borderType=cv2.BORDER_REPLICATE) for i in range(0, array.shape[2], 512)]
    chunks = [chunk[..., None] if chunk.ndim == 2 else chunk for chunk in chunks]
    return torch.from_numpy(np.concatenate(chunks, axis=2)).permute(2, 0, 1).contiguous()


def _shadow(spec, dx, dy, theta) -> torch.Tensor:
    """Alpha ``[T,h,w]`` of a soft cast shadow on the ground below the object (its colour is black): the object's
    silhouette flattened, stretched, sheared to the right and blurred. ``dx, dy``: offsets from the object centre."""
    a, b = spec.semi_axes
    ground = dy - _SHADOW_DROP * b
    sx = (dx - _SHADOW_SHIFT * a) / _SHADOW_STRETCH - _SHADOW_SHEAR * ground
    u, v = _rotate(sx, ground / _SHADOW_SQUASH, theta)
    hard = _silhouette(u, v, spec)
    return _SHADOW_ALPHA * _blur_frames(hard, sigma=max(0.5, _SHADOW_BLUR * b)).clamp(0, 1)


def _reflection(alpha, rgb, water_row, top, height) -> tuple[torch.Tensor, torch.Tensor]:
    """The object mirrored about the water line (global row ``water_row``), bluish, fading deeper into the water.

    ``alpha [T,h,w]`` and ``rgb [T,3,h,w]`` cover a window starting at global row ``top`` that holds the whole
    object; returns the reflection's alpha ``[T,h,w]`` and colour ``[T,3,h,w]`` in that window."""
    rows = torch.arange(top, top + alpha.shape[1])
    source = 2 * water_row - 1 - rows - top  # window row that row `rows` mirrors
    valid = (rows >= water_row) & (source >= 0) & (source < alpha.shape[1])
    source = source.clamp(0, alpha.shape[1] - 1)
    fade = 1 - 0.6 * (rows - water_row).clamp(min=0).float() / max(1, height - water_row)
    r_alpha = _REFLECTION_ALPHA * alpha[:, source] * (fade * valid).view(1, -1, 1)
    tint = torch.tensor([0.8, 0.9, 1.0]).view(1, 3, 1, 1)
    r_rgb = (rgb[:, :, source] * tint).clamp(0, 1)
    return r_alpha, r_rgb


def _dust_puffs(spec, s, camera_x):
    """The trail's puffs, newest first: (x [T], y [T], radius, peak alpha) in view coordinates. Puffs sit where the
    object's rear was ``k`` steps ago, so the trail stays put in the world when the camera pans."""
    a, b = spec.semi_axes
    lag = 3.0 * a / _DUST_PUFFS / max(abs(spec.speed), 1e-6)  # the trail is about three object widths long
    direction = math.copysign(1.0, spec.speed)
    for k in range(1, _DUST_PUFFS + 1):
        px, py = spec.center(s - k * lag)
        yield (px - direction * 0.8 * a - camera_x, py + 0.45 * b, 0.35 * b * (1 + 0.25 * k),
               0.38 * (1 - (k - 1) / _DUST_PUFFS))


def _dust(spec, s, camera_x, xs, ys, top, left) -> torch.Tensor:
    """Alpha ``[T,h,w]`` of the dust trail in a window at (``top``, ``left``); ``xs [1,1,w]``, ``ys [1,h,1]`` hold
    global pixel coordinates. Each puff is a smooth bump that is exactly 0 beyond three radii."""
    transparency = torch.ones(len(s), ys.shape[1], xs.shape[2])
    for px, py, radius, weight in _dust_puffs(spec, s, camera_x):
        px = torch.from_numpy(px).float().view(-1, 1, 1)
        py = torch.from_numpy(py).float().view(-1, 1, 1)
        bump = (1 - ((xs - px) ** 2 + (ys - py) ** 2) / (9 * radius * radius)).clamp(min=0) ** 3
        transparency = transparency * (1 - weight * bump)
    views = []
    for shift in camera_x:  # the grain is fixed in the world: read it through the moving window
        matrix = np.array([[1, 0, shift + left], [0, 1, top]], np.float32)
        views.append(cv2.warpAffine(spec.grain, matrix, (xs.shape[2], ys.shape[1]),
                                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT))
    return ((1 - transparency) * torch.from_numpy(np.stack(views))).clamp(0, _DUST_ALPHA_MAX)


def _object_depths(rng, specs, s) -> torch.Tensor:
    """Per-frame depths ``[T,N]``: objects 0 and 1 swap depth when they pass each other; object 2 stays farthest."""
    depths = []
    for index, spec in enumerate(specs):
        if index == 0:
            depth = 0.5 + 0.2 * (s - spec.cross_s)
        elif index == 1:
            depth = 0.5 - 0.2 * (s - spec.cross_s)
        else:
            depth = 0.75 + 0.04 * np.sin(2 * math.pi * s + float(rng.uniform(0, 2 * math.pi)))
        depths.append(depth)
    return torch.from_numpy(np.stack(depths, axis=1)).float()


def _depth_video(shape, masks, object_depth, order) -> torch.Tensor:
    """Depth ``[T,1,H,W]``: a far vertical gradient for the background, each object's depth inside its mask,
    nearest object winning where masks overlap."""
    frames, _, height, width = shape
    top, bottom = BACKGROUND_DEPTH
    gradient = torch.linspace(top, bottom, height).view(1, 1, height, 1)
    depth = gradient.expand(frames, 1, height, width).clone()
    time = torch.arange(frames)
    for rank in reversed(range(order.shape[1])):
        index = order[:, rank]
        value = object_depth[time, index].view(-1, 1, 1, 1)
        depth = torch.where(masks[index, time] > 0, value, depth)
    return depth


# --------------------------------------------------------------------------------------------------------------------
# Degraded inputs: what a user's solo and background videos look like


@dataclass(frozen=True)
class Degradation:
    """Differences between solo and background videos that are not layers.

    A user's solo and background videos come from two separate generations of a video model, or from a temporal-median
    plate of a real camera, so they differ everywhere by a little noise, compression, colour drift and sub-pixel
    misalignment. Each video (every solo and the background) is degraded independently, in this order: shift (the
    background only), colour drift, Gaussian noise, JPEG compression, clamp to 0..1.
    """

    noise_sigma: float = 0.0
    """Standard deviation of independent Gaussian noise per pixel and channel (0..1 units; 4/255 ≈ 0.0157)."""
    jpeg_quality: int | None = None
    """JPEG quality of a per-frame compression round trip (None: no compression)."""
    drift: float = 0.0
    """Largest relative gain change per channel (0.02 = ±2 %), drawn per video and ramping by up to half as much
    again over the clip."""
    shift_px: float = 0.0
    """Translation of the background in pixels (x by ``shift_px``, y by ``-shift_px / 2``), resampled bicubically."""


DEGRADATIONS: dict[str, Degradation] = {
    "none": Degradation(),
    "noise2": Degradation(noise_sigma=2 / 255),
    "noise4": Degradation(noise_sigma=4 / 255),
    "jpeg": Degradation(jpeg_quality=85),
    "drift": Degradation(drift=0.02),
    "shift": Degradation(shift_px=0.5),
    "combined": Degradation(noise_sigma=2 / 255, jpeg_quality=85, drift=0.02, shift_px=0.5),
    "combined4": Degradation(noise_sigma=4 / 255, jpeg_quality=85, drift=0.02, shift_px=0.5),
}
"""Named degradations used by the tests and ``bench/bench_degraded.py``."""


def degrade_scene(scene: SyntheticScene, degradation: "Degradation | str", seed: int = 0) -> SyntheticScene:
    """A copy of ``scene`` whose ``solos`` and ``background`` are degraded independently (see :class:`Degradation`).

    The ground truth (layers, masks, ``clean_background``, ``clean_solos``) stays exact, so a fit on the degraded
    inputs can be scored against what the layers really are. ``degradation`` is a :class:`Degradation` or a name in
    :data:`DEGRADATIONS`. Same scene, degradation and seed, same tensors.
    """
    if isinstance(degradation, str):
        if degradation not in DEGRADATIONS:
            raise ValueError(f"degradation must be a Degradation or one of {sorted(DEGRADATIONS)}, got {degradation!r}")
        degradation = DEGRADATIONS[degradation]
    if not isinstance(degradation, Degradation):
        raise TypeError(f"degradation must be a Degradation or a name, got {type(degradation).__name__}")
    if scene.clean_background is not None:
        raise ValueError("scene is already degraded; degrade the original scene instead")
    rng = np.random.default_rng(seed)
    background = _degrade_video(scene.background, degradation, rng, shift=True)
    solos = torch.stack([_degrade_video(solo, degradation, rng, shift=False) for solo in scene.solos])
    values = {f.name: getattr(scene, f.name) for f in fields(scene)}
    values.update(background=background, solos=solos, clean_background=scene.background,
                  clean_solos=scene.solos, degradation=degradation)
    return SyntheticScene(**values)


def _degrade_video(video: torch.Tensor, d: Degradation, rng: np.random.Generator, shift: bool) -> torch.Tensor:
    """One video ``[T,3,H,W]`` degraded by ``d`` with draws from ``rng``."""
    frames = video.permute(0, 2, 3, 1).numpy().astype(np.float32)  # [T,H,W,3]
    t, h, w, _ = frames.shape
    if shift and d.shift_px:
        matrix = np.array([[1, 0, d.shift_px], [0, 1, -d.shift_px / 2]], np.float32)
        frames = np.stack([cv2.warpAffine(f, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
                           for f in frames])
    if d.drift:
        gain = rng.uniform(-d.drift, d.drift, size=3).astype(np.float32)
        ramp = rng.uniform(-d.drift / 2, d.drift / 2, size=3).astype(np.float32)
        s = np.linspace(0.0, 1.0, t, dtype=np.float32)[:, None]
        frames = frames * (1 + gain + ramp * s)[:, None, None, :]
    if d.noise_sigma:
        frames = frames + rng.normal(0.0, d.noise_sigma, size=frames.shape).astype(np.float32)
    frames = np.clip(frames, 0.0, 1.0)
    if d.jpeg_quality is not None:
        params = [cv2.IMWRITE_JPEG_QUALITY, int(d.jpeg_quality)]
        coded = []
        for f in frames:
            ok, data = cv2.imencode(".jpg", np.round(f[..., ::-1] * 255).astype(np.uint8), params)
            coded.append(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0)
        frames = np.stack(coded)
    return torch.from_numpy(np.ascontiguousarray(np.clip(frames, 0.0, 1.0))).permute(0, 3, 1, 2).contiguous()
