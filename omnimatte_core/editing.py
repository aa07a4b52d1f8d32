"""Layer edits: the things omnimattes exist for. Every function takes :class:`Layers` and returns new ones (or a new
video); nothing is modified in place.

- :func:`with_background` / :func:`recomposite`: put the layers over a new background (a video or one image,
  resized to the layers' size: ``fit="cover"`` scales and centre-crops, ``"stretch"`` ignores the aspect ratio).
- :func:`reorder_layers`: a new front-to-back order ("1,0,2" for every frame, or per frame ``[T,N]``).
- :func:`drop_layers` / :func:`select_layers`: remove layers, or keep some in a given order (a dropped object
  vanishes with its effects; the background shows through).
- :func:`retime_layer`: shift a layer in time, hold (freeze) a frame, change its speed; fractional source times
  blend neighbouring frames in premultiplied colour, frames outside the source become transparent (or hold the end).
- :func:`fade_layer`: opacity ramps in and out, and a constant opacity.

Layers are picked by index or by name. Retiming and fading keep the per-frame ``order`` of the output frames; if a
retimed layer now crosses another one, :func:`reorder_layers` it.
"""
from __future__ import annotations

import math
import torch
import torch.nn.functional as F

from .compositing import composite
from .layers import Layers
from .ordering import manual_order

FITS = ("cover", "stretch")
OUTSIDE = ("transparent", "hold")
INTERPOLATIONS = ("blend", "nearest")


def _check_layers(layers) -> Layers:
    if not isinstance(layers, Layers):
        raise TypeError(f"layers must be an omnimatte_core.layers.Layers, got {type(layers).__name__}")
    return layers


def layer_index(layers: Layers, layer, name: str = "layer") -> int:
    """Resolve a layer given by index (negative counts from the end) or by name to its index."""
    if isinstance(layer, str):
        if layer not in layers.names:
            raise ValueError(f"{name} {layer!r} is not one of the layer names {layers.names}")
        return layers.names.index(layer)
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise ValueError(f"{name} must be a layer index or name, got {layer!r}")
    n = layers.num_layers
    if not -n <= layer < n:
        raise ValueError(f"{name} index {layer} is out of range for {n} layers (0..{n - 1})")
    return layer % n


def _number(value, name: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ValueError(f"{name} must be a number in {low}..{high}, got {value!r}")
    return float(value)


def _frames(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a number of frames >= 0, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------------------------
# Background


def resize_background(background: torch.Tensor, size: tuple[int, int], num_frames: int, *,
                      fit: str = "cover") -> torch.Tensor:
    """A background ``[T,3,H,W]`` for ``num_frames`` frames of ``size = (H, W)``.

    ``background``: one image ``[3,h,w]`` / ``[1,3,h,w]`` (used for every frame) or a video ``[F,3,h,w]`` with
    ``F >= T`` frames (the first T are used). ``fit``: "cover" (scale to cover, centre crop; keeps proportions) or
    "stretch". Bilinear with antialiasing.
    """
    if not isinstance(background, torch.Tensor):
        raise TypeError(f"background must be a torch.Tensor [3,H,W] or [F,3,H,W], got {type(background).__name__}")
    if background.ndim == 3:
        background = background.unsqueeze(0)
    if background.ndim != 4 or background.shape[1] != 3 or background.shape[0] < 1:
        raise ValueError(f"background must be an image [3,H,W] or a video [F,3,H,W], got {list(background.shape)}")
    if not background.is_floating_point() or not bool(torch.isfinite(background).all()):
        raise ValueError("background must be a finite floating-point tensor in 0..1")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    frames = background.shape[0]
    if frames != 1 and frames < num_frames:
        raise ValueError(f"background has {frames} frames but the layers have {num_frames}; give one image or a "
                         f"video of at least {num_frames} frames")
    background = background[:num_frames].float()
    height, width = size
    h, w = background.shape[2:]
    if (h, w) != (height, width):
        if fit == "cover":
            scale = max(height / h, width / w)
            scaled = (max(height, round(h * scale)), max(width, round(w * scale)))
            background = F.interpolate(background, size=scaled, mode="bilinear", align_corners=False,
                                       antialias=True)
            top, left = (scaled[0] - height) // 2, (scaled[1] - width) // 2
            background = background[:, :, top:top + height, left:left + width]
        else:
            background = F.interpolate(background, size=(height, width), mode="bilinear", align_corners=False,
                                       antialias=True)
    return background.clamp(0, 1).expand(num_frames, -1, -1, -1).contiguous()


def with_background(layers: Layers, background: torch.Tensor, *, fit: str = "cover") -> Layers:
    """The same layers over a new background (image or video, resized; see :func:`resize_background`)."""
    layers = _check_layers(layers)
    new = resize_background(background, layers.size, layers.num_frames, fit=fit)
    return layers.replace(background=new.to(device=layers.device, dtype=layers.background.dtype))


def recomposite(layers: Layers, background: torch.Tensor | None = None, *, fit: str = "cover") -> torch.Tensor:
    """The video ``[T,3,H,W]`` of the layers over ``background`` (their own when ``None``), back to front."""
    layers = _check_layers(layers)
    if background is not None:
        layers = with_background(layers, background, fit=fit)
    return composite(layers.rgb, layers.alpha, layers.background, layers.order)


# --------------------------------------------------------------------------------------------------------------------
# Order and selection


def reorder_layers(layers: Layers, order) -> Layers:
    """Layers with a new front-to-back order: ``"1,0,2"``, a sequence or ``[N]`` for every frame, or ``[T,N]``."""
    layers = _check_layers(layers)
    return layers.replace(order=manual_order(order, layers.num_frames, layers.num_layers, "order"))


def drop_layers(layers: Layers, drop) -> Layers:
    """Layers without the ones in ``drop`` (an index, a name, or a list of them). The remaining layers keep their
    relative order, renumbered, in the per-frame order too."""
    layers = _check_layers(layers)
    items = [drop] if isinstance(drop, (int, str)) else list(drop)
    gone = {layer_index(layers, item, "drop") for item in items}
    keep = [i for i in range(layers.num_layers) if i not in gone]
    if not keep:
        raise ValueError(f"drop removes all {layers.num_layers} layers; keep at least one (the background alone is "
                         "layers.background)")
    return select_layers(layers, keep)


# --------------------------------------------------------------------------------------------------------------------
# Time


def retime_curve(num_frames: int, *, shift: float = 0.0, speed: float = 1.0, hold_at: int | None = None,
                 hold_frames: int | None = None) -> torch.Tensor:
    """Source time (in frames, float) ``[T]`` shown at each output frame.

    - ``shift``: frames the layer starts later (negative: earlier). Output frame ``t`` shows source ``t - shift``.
    - ``speed``: playback rate (2 = twice as fast, 0.5 = slow motion), anchored at the (shifted) start.
    - ``hold_at``/``hold_frames``: what output frame ``hold_at`` shows stays on screen for ``hold_frames`` frames in
      all, then playback resumes with the next frame (everything after is delayed by ``hold_frames - 1``);
      ``hold_frames=None`` holds to the end. Holding happens before ``shift`` and ``speed`` map to source time.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be an integer >= 1, got {num_frames!r}")
    shift = _number(shift, "shift")
    speed = _number(speed, "speed", 0.0)
    if speed == 0:
        raise ValueError("speed must be > 0 (use hold_at/hold_frames to freeze a frame)")
    t = torch.arange(num_frames, dtype=torch.float64)
    if hold_at is not None:
        hold_at = _frames(hold_at, "hold_at")
        length = num_frames if hold_frames is None else _frames(hold_frames, "hold_frames")
        held = (t >= hold_at) & (t < hold_at + length)
        # the held frame fills `length` output frames, then playback resumes with the frame after it
        t = torch.where(held, torch.full_like(t, float(hold_at)),
                        torch.where(t >= hold_at + length, t - length + 1, t))
    return (t - shift) * speed


def _sample_frames(x: torch.Tensor, times: torch.Tensor, mode: str) -> torch.Tensor:
    """``x [T,...]`` at fractional ``times [S]`` (clamped to the clip), linear or nearest along time."""
    last = x.shape[0] - 1
    times = times.clamp(0, last)
    if mode == "nearest":
        return x[torch.round(times).long().to(x.device)]
    low = times.floor().long()
    high = (low + 1).clamp(max=last)
    frac = (times - low.double()).float().to(x.device).view(-1, *([1] * (x.ndim - 1)))
    return x[low.to(x.device)] * (1 - frac) + x[high.to(x.device)] * frac


def retime_layer(layers: Layers, layer, shift: float = 0.0, *, speed: float = 1.0, hold_at: int | None = None,
                 hold_frames: int | None = None, times: torch.Tensor | None = None, outside: str = "transparent",
                 interpolation: str = "blend") -> Layers:
    """One layer played back with a new timing; the other layers and the background are unchanged.

    Args:
        layer: index or name.
        shift, speed, hold_at, hold_frames: the timing (see :func:`retime_curve`), or
        times: ``[T]`` source frame (float) for each output frame, instead of them (giving both is an error).
        outside: source times before the first or after the last frame make the layer "transparent" there, or
            "hold" its first/last frame.
        interpolation: "blend" mixes the two nearest source frames (in premultiplied colour, so edges stay clean),
            "nearest" repeats/drops whole frames. The layer's object mask is always sampled nearest.
    """
    layers = _check_layers(layers)
    index = layer_index(layers, layer)
    if outside not in OUTSIDE:
        raise ValueError(f"outside must be one of {OUTSIDE}, got {outside!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    t = layers.num_frames
    if times is None:
        times = retime_curve(t, shift=shift, speed=speed, hold_at=hold_at, hold_frames=hold_frames)
    else:
        if shift != 0 or speed != 1 or hold_at is not None or hold_frames is not None:
            raise ValueError("give either times or shift/speed/hold_at/hold_frames, not both")
        times = torch.as_tensor(times, dtype=torch.float64).cpu()
        if tuple(times.shape) != (t,) or not bool(torch.isfinite(times).all()):
            raise ValueError(f"times must be [T] = [{t}] finite source frame numbers, got shape {list(times.shape)}")
    inside = ((times >= -1e-6) & (times <= t - 1 + 1e-6)).to(layers.device)

    alpha = _sample_frames(layers.alpha[index], times, interpolation)
    premultiplied = _sample_frames(layers.rgb[index] * layers.alpha[index], times, interpolation)
    fallback = _sample_frames(layers.rgb[index], times, "nearest")  # colour where the blended alpha is 0
    rgb = torch.where(alpha > 0, premultiplied / alpha.clamp_min(1e-8), fallback).clamp(0, 1)
    if outside == "transparent":
        alpha = alpha * inside.view(-1, 1, 1, 1)

    new_rgb, new_alpha = layers.rgb.clone(), layers.alpha.clone()
    new_rgb[index], new_alpha[index] = rgb, alpha.clamp(0, 1)
    masks = None
    if layers.masks is not None:
        masks = layers.masks.clone()
        masks[index] = _sample_frames(layers.masks[index], times, "nearest")
        if outside == "transparent":
            masks[index] = masks[index] * inside.view(-1, 1, 1, 1)
    return layers.replace(rgb=new_rgb, alpha=new_alpha, masks=masks, background=layers.background.clone())


def fade_curve(num_frames: int, *, fade_in: int = 0, fade_out: int = 0, start: int = 0, end: int | None = None,
               opacity: float = 1.0) -> torch.Tensor:
    """Opacity factor ``[T]`` in 0..1: 0 before ``start`` and after ``end`` (inclusive frame numbers; ``end=None`` is
    the last frame), rising linearly from 0 at ``start`` to full at ``start + fade_in``, falling from full at
    ``end - fade_out`` to 0 at ``end``; everything times ``opacity``. ``fade_in=0``/``fade_out=0``: hard cuts."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be an integer >= 1, got {num_frames!r}")
    fade_in, fade_out, start = _frames(fade_in, "fade_in"), _frames(fade_out, "fade_out"), _frames(start, "start")
    end = num_frames - 1 if end is None else _frames(end, "end")
    if end < start:
        raise ValueError(f"end ({end}) must not be before start ({start})")
    opacity = _number(opacity, "opacity", 0.0, 1.0)
    t = torch.arange(num_frames, dtype=torch.float32)
    rise = ((t - start) / fade_in).clamp(0, 1) if fade_in > 0 else (t >= start).float()
    fall = ((end - t) / fade_out).clamp(0, 1) if fade_out > 0 else (t <= end).float()
    return torch.minimum(rise, fall) * opacity


def fade_layer(layers: Layers, layer, opacity: float = 1.0, *, fade_in: int = 0, fade_out: int = 0,
               start: int = 0, end: int | None = None) -> Layers:
    """One layer's alpha scaled per frame by :func:`fade_curve` (colour untouched); the rest unchanged."""
    layers = _check_layers(layers)
    index = layer_index(layers, layer)
    factor = fade_curve(layers.num_frames, fade_in=fade_in, fade_out=fade_out, start=start, end=end,
                        opacity=opacity).to(device=layers.device, dtype=layers.alpha.dtype)
    alpha = layers.alpha.clone()
    alpha[index] = alpha[index] * factor.view(-1, 1, 1, 1)
    return layers.replace(rgb=layers.rgb.clone(), alpha=alpha, background=layers.background.clone())


def select_layers(layers: Layers, keep) -> Layers:
    """Only the layers in ``keep`` (an index, a name, or a list of them), renumbered in the order listed: layer ``k``
    of the result is ``keep[k]``. The per-frame depth order of the kept layers is unchanged; follow with
    ``reorder_layers(result, range(len(keep)))`` to make the listed order the front-to-back order."""
    layers = _check_layers(layers)
    items = [keep] if isinstance(keep, (int, str)) else list(keep)
    picked = [layer_index(layers, item, "keep") for item in items]
    if not picked:
        raise ValueError("keep must name at least one layer")
    if len(set(picked)) != len(picked):
        raise ValueError(f"keep lists a layer twice: {items!r}")
    new_index = torch.full((layers.num_layers,), -1, dtype=torch.long)
    new_index[picked] = torch.arange(len(picked))
    remapped = new_index[layers.order]  # [T,N] with -1 for layers left out
    order = remapped[remapped >= 0].reshape(layers.num_frames, len(picked))
    index = torch.tensor(picked, device=layers.device)
    return layers.replace(rgb=layers.rgb.index_select(0, index), alpha=layers.alpha.index_select(0, index),
                          background=layers.background.clone(),
                          masks=None if layers.masks is None else layers.masks.index_select(0, index),
                          names=[layers.names[i] for i in picked], order=order)
