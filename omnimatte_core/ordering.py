"""Per-frame front-to-back order of the object layers: from a depth video, from mask positions, or fixed by hand.

Orders are ``[T,N]`` int64 tensors, ``order[t]`` a permutation of the object indices, ``order[t,0]`` the nearest.

- :func:`order_from_depth`: a robust statistic (default the median) of the depth inside each object's mask, per frame.
  Depth may come from any estimator. ``bright_is_near=True`` (the default) is for disparity-like maps where large
  values are near, as Depth Anything, DepthCrafter, MiDaS and the ComfyUI depth nodes output; ``False`` is for metric
  depth, where large values are far.
- :func:`order_from_mask_position`: no depth available. Heuristic for a camera looking at a ground plane: the object
  whose mask reaches lower in the frame stands nearer the camera. Wrong for flying or hanging objects; give depth or a
  manual order there.
- :func:`manual_order` / :func:`parse_order`: one fixed order for the whole clip, e.g. ``"1,0,2"``.
- :func:`order_layers`: the single entry point the nodes and the demo use.

Frames where an object's mask is empty give it no measurement. The object then keeps its last measured value (so it
stays where it was in the order); before its first appearance it takes its first measured value; an object that is
never visible goes last (farthest). Its place matters little there anyway: an object missing from its mask usually
has (almost) no alpha.

Flicker: per-frame depth estimates are noisy, and two objects at similar depth would swap back and forth, which pops
visibly where they overlap. ``smooth_frames`` median-filters each object's depth over time, and ``hysteresis`` keeps
the previous frame's order until the depth difference that argues for a swap exceeds that fraction of the clip's
depth range. Both are off by default, so the order follows the depth exactly.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from .layers import check_order

MASK_THRESHOLD = 0.5  # mask values above this count as the object
_SORT_ELEMENTS = 1 << 24  # masked-quantile work per chunk of frames (bounds memory on long HD clips)


# --------------------------------------------------------------------------------------------------------------------
# Input checks


def _as_masks(masks, name: str = "masks") -> torch.Tensor:
    """``[N,T,1,H,W]`` or ``[N,T,H,W]`` → float ``[N,T,H,W]``."""
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [N,T,1,H,W] or [N,T,H,W], got {type(masks).__name__}")
    if masks.ndim == 5:
        if masks.shape[2] != 1:
            raise ValueError(f"{name} must be [N,T,1,H,W] or [N,T,H,W] (one channel), got {list(masks.shape)}")
        masks = masks[:, :, 0]
    elif masks.ndim != 4:
        raise ValueError(f"{name} must be [N,T,1,H,W] or [N,T,H,W], got {list(masks.shape)}")
    if masks.shape[0] < 1 or masks.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one object and one frame, got {list(masks.shape)}")
    return masks.float()


def _as_depth(depth, masks: torch.Tensor, resize_depth: bool, name: str = "depth") -> torch.Tensor:
    """``[T,1,H,W]``, ``[T,3,H,W]`` (grey as RGB, averaged) or ``[T,H,W]`` → float ``[T,H,W]`` matching ``masks``."""
    if not isinstance(depth, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [T,1,H,W] or [T,H,W], got {type(depth).__name__}")
    if depth.ndim == 4:
        if depth.shape[1] not in (1, 3):
            raise ValueError(f"{name} must be [T,1,H,W] or [T,H,W] (a grey depth map per frame), "
                             f"got {list(depth.shape)}")
        depth = depth.float().mean(dim=1)
    elif depth.ndim != 3:
        raise ValueError(f"{name} must be [T,1,H,W] or [T,H,W], got {list(depth.shape)}")
    depth = depth.float()
    _, frames, height, width = masks.shape
    if depth.shape[0] != frames:
        raise ValueError(f"{name} has {depth.shape[0]} frames but masks have {frames}; expected one depth map per "
                         "frame")
    if tuple(depth.shape[1:]) != (height, width):
        if not resize_depth:
            raise ValueError(f"{name} is {depth.shape[1]}x{depth.shape[2]} (HxW) but masks are {height}x{width}; "
                             "resize the depth maps to the video size, or pass resize_depth=True")
        depth = F.interpolate(depth.unsqueeze(1), size=(height, width), mode="bilinear",
                              align_corners=False).squeeze(1)
    if not bool(torch.isfinite(depth).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return depth.to(masks.device)


def _check_options(percentile: float, smooth_frames: int, hysteresis: float) -> None:
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be a number in 0..100, got {percentile!r}")
    if isinstance(smooth_frames, bool) or not isinstance(smooth_frames, int) or smooth_frames < 1:
        raise ValueError(f"smooth_frames must be an integer >= 1 (1 = no smoothing), got {smooth_frames!r}")
    if isinstance(hysteresis, bool) or not isinstance(hysteresis, (int, float)) or not 0 <= hysteresis <= 1:
        raise ValueError(f"hysteresis must be a fraction of the depth range in 0..1, got {hysteresis!r}")


# --------------------------------------------------------------------------------------------------------------------
# Per-object statistics


def masked_percentile(values: torch.Tensor, masks: torch.Tensor, percentile: float) -> torch.Tensor:
    """Per object and frame, the ``percentile`` (0..100, linear interpolation) of ``values`` inside the mask.

    ``values [T,H,W]``, ``masks [N,T,H,W]`` (above 0.5 counts) → ``[T,N]``, NaN where a mask is empty.
    """
    n, frames, height, width = masks.shape
    out = torch.full((frames, n), float("nan"), device=values.device)
    chunk = max(1, _SORT_ELEMENTS // max(1, height * width))
    q = percentile / 100.0
    for first in range(0, frames, chunk):
        span = slice(first, first + chunk)
        inside = masks[:, span].reshape(n, -1, height * width) > MASK_THRESHOLD  # [N,c,P]
        # pixels outside the mask sort to the end as +inf, so the first `count` sorted values are the object's
        v = torch.where(inside, values[span].reshape(1, -1, height * width), torch.tensor(float("inf"),
                                                                                         device=values.device))
        v = v.sort(dim=-1).values
        count = inside.sum(dim=-1)  # [N,c]
        position = q * (count - 1).clamp_min(0).float()
        low = position.floor().long()
        high = position.ceil().long()
        v_low = v.gather(-1, low.unsqueeze(-1)).squeeze(-1)
        v_high = v.gather(-1, high.unsqueeze(-1)).squeeze(-1)
        stat = v_low + (v_high - v_low) * (position - low.float())
        stat = torch.where(count > 0, stat, torch.tensor(float("nan"), device=values.device))
        out[span] = stat.transpose(0, 1)
    return out


def _fill_missing(farness: torch.Tensor) -> torch.Tensor:
    """NaN entries of ``[T,N]``: carry the last measured value forward, then the first one backward; +inf for an
    object never measured (it goes last)."""
    out = farness.clone()
    frames = out.shape[0]
    for t in range(1, frames):
        out[t] = torch.where(torch.isnan(out[t]), out[t - 1], out[t])
    for t in range(frames - 2, -1, -1):
        out[t] = torch.where(torch.isnan(out[t]), out[t + 1], out[t])
    return torch.nan_to_num(out, nan=float("inf"))


def _median_over_time(farness: torch.Tensor, window: int) -> torch.Tensor:
    """Running median of ``[T,N]`` over ``window`` frames (centred, edges replicated)."""
    if window <= 1 or farness.shape[0] < 2:
        return farness
    before, after = (window - 1) // 2, window // 2
    padded = F.pad(farness.t().unsqueeze(0), (before, after), mode="replicate").squeeze(0)  # [N,T+w-1]
    return padded.unfold(-1, window, 1).median(dim=-1).values.t()


def _sort_with_hysteresis(farness: torch.Tensor, margin: float) -> torch.Tensor:
    """Front-to-back order ``[T,N]`` from per-frame farness ``[T,N]`` (smaller = nearer).

    With ``margin > 0`` each frame starts from the previous frame's order and two neighbours swap only when the one
    in front is farther by more than ``margin`` (bubble passes; N is small)."""
    order = torch.argsort(farness, dim=1, stable=True)
    if margin <= 0 or farness.shape[0] < 2:
        return order
    values = farness.cpu().tolist()
    current = order[0].tolist()
    rows = [list(current)]
    for t in range(1, len(values)):
        f = values[t]
        swapped = True
        while swapped:
            swapped = False
            for k in range(len(current) - 1):
                front, back = current[k], current[k + 1]
                if f[front] > f[back] + margin:
                    current[k], current[k + 1] = back, front
                    swapped = True
        rows.append(list(current))
    return torch.tensor(rows, dtype=torch.long)


def _finite_range(x: torch.Tensor) -> float:
    finite = x[torch.isfinite(x)]
    return float(finite.max() - finite.min()) if finite.numel() else 0.0


# --------------------------------------------------------------------------------------------------------------------
# Orders


def object_depths(depth: torch.Tensor, masks: torch.Tensor, *, bright_is_near: bool = True, percentile: float = 50.0,
                  resize_depth: bool = False) -> torch.Tensor:
    """Per frame and object a robust depth statistic, as *farness* ``[T,N]`` (larger = farther; NaN: empty mask).

    Args:
        depth: ``[T,1,H,W]`` or ``[T,H,W]`` depth maps in any units (``[T,3,H,W]`` grey-as-RGB is averaged).
        masks: ``[N,T,1,H,W]`` or ``[N,T,H,W]`` object masks (values above 0.5 count).
        bright_is_near: ``True`` for disparity-like maps (large = near); ``False`` for metric depth (large = far).
        percentile: 0..100, the statistic of the object's depth values; 50 (median) ignores mask edges that bleed
            onto the background and parts covered by another object (up to half the mask).
        resize_depth: resample depth (bilinear) when its size differs from the masks' instead of raising.

    Returns farness: the statistic itself for metric depth, its negation for disparity.
    """
    masks = _as_masks(masks)
    depth = _as_depth(depth, masks, resize_depth)
    _check_options(percentile, 1, 0.0)
    farness = -depth if bright_is_near else depth
    # the percentile of farness: a low percentile means "the nearest part of the object" in both conventions
    return masked_percentile(farness, masks, percentile)


def order_from_depth(depth: torch.Tensor, masks: torch.Tensor, *, bright_is_near: bool = True,
                     percentile: float = 50.0, smooth_frames: int = 1, hysteresis: float = 0.0,
                     resize_depth: bool = False) -> torch.Tensor:
    """Front-to-back order ``[T,N]`` (int64, CPU) of N objects from a depth video.

    ``depth [T,1,H,W]``/``[T,H,W]`` and ``masks [N,T,1,H,W]``/``[N,T,H,W]``; see :func:`object_depths` for
    ``bright_is_near``, ``percentile``, ``resize_depth``. ``smooth_frames`` (odd or even int >= 1): running median
    of each object's depth over that many frames (1 = off). ``hysteresis`` (0..1): fraction of the clip's object depth
    range by which the order must be wrong before it changes from the previous frame (0 = off; 0.02 suits noisy
    per-frame estimators). Ties keep the object index order. Raises ``ValueError`` naming the bad argument.
    """
    _check_options(percentile, smooth_frames, hysteresis)
    farness = object_depths(depth, masks, bright_is_near=bright_is_near, percentile=percentile,
                            resize_depth=resize_depth)
    margin = hysteresis * _finite_range(farness)
    farness = _median_over_time(_fill_missing(farness), smooth_frames)
    return _sort_with_hysteresis(farness, margin).cpu()


def order_from_mask_position(masks: torch.Tensor, *, percentile: float = 95.0, smooth_frames: int = 1,
                             hysteresis: float = 0.0) -> torch.Tensor:
    """Front-to-back order ``[T,N]`` (int64, CPU) with no depth: the object whose mask reaches lower is nearer.

    The lowest point of each mask is measured robustly as the ``percentile`` (default 95) of its pixel rows, so a few
    stray mask pixels do not decide. Assumes objects standing on a ground plane seen from above the horizon; give
    depth or a manual order for anything else. ``smooth_frames`` and ``hysteresis`` (fraction of the frame height)
    as in :func:`order_from_depth`.
    """
    _check_options(percentile, smooth_frames, hysteresis)
    masks = _as_masks(masks)
    _, frames, height, width = masks.shape
    rows = torch.arange(height, dtype=torch.float32, device=masks.device).view(1, height, 1) / max(1, height - 1)
    # farness = -(how low the object reaches), in frame heights
    farness = -masked_percentile(rows.expand(frames, height, width), masks, percentile)
    farness = _median_over_time(_fill_missing(farness), smooth_frames)
    return _sort_with_hysteresis(farness, hysteresis).cpu()


def parse_order(text, num_layers: int, name: str = "order") -> torch.Tensor:
    """A front-to-back permutation ``[N]`` from ``"1,0,2"`` (commas, spaces, semicolons or brackets), a sequence of
    ints, or a tensor. Raises ``ValueError`` naming ``name`` unless it is a permutation of ``0..num_layers-1``."""
    if isinstance(text, str):
        tokens = [tok for tok in re.split(r"[\s,;\[\]()]+", text.strip()) if tok]
        if not tokens or not all(re.fullmatch(r"[+-]?\d+", tok) for tok in tokens):
            raise ValueError(f"{name} must list layer indices front to back, like \"1,0,2\", got {text!r}")
        values = [int(tok) for tok in tokens]
    else:
        try:
            values = torch.as_tensor(text).reshape(-1).tolist()
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"{name} must be a string like \"1,0,2\" or a sequence of layer indices, "
                             f"got {text!r}") from error
        if not all(isinstance(v, int) or (isinstance(v, float) and v.is_integer()) for v in values):
            raise ValueError(f"{name} must hold integer layer indices, got {values!r}")
        values = [int(v) for v in values]
    if sorted(values) != list(range(num_layers)):
        raise ValueError(f"{name} must be a permutation of 0..{num_layers - 1} (each of the {num_layers} layers once, "
                         f"nearest first), got {values}")
    return torch.tensor(values, dtype=torch.long)


def manual_order(order, num_frames: int, num_layers: int, name: str = "order") -> torch.Tensor:
    """A fixed order for every frame: ``order`` as for :func:`parse_order` (``[N]``), or already ``[T,N]``.

    Returns ``[T,N]`` int64 on the CPU; ``ValueError`` naming ``name`` for anything that is not a permutation."""
    if isinstance(order, torch.Tensor) and order.ndim == 2:
        return check_order(order, num_frames, num_layers, name)
    return parse_order(order, num_layers, name).expand(num_frames, num_layers).clone()


def order_layers(masks: torch.Tensor, depth: torch.Tensor | None = None, *, manual=None, bright_is_near: bool = True,
                 percentile: float = 50.0, smooth_frames: int = 1, hysteresis: float = 0.0,
                 resize_depth: bool = False) -> torch.Tensor:
    """Front-to-back order ``[T,N]`` (int64, CPU): ``manual`` if given (string "1,0,2", sequence, ``[N]`` or
    ``[T,N]``), else from ``depth`` (:func:`order_from_depth`), else from mask positions
    (:func:`order_from_mask_position`, which ignores ``percentile``). ``masks [N,T,1,H,W]`` or ``[N,T,H,W]``.

    A manual order wins over depth: in a node graph a typed override next to a wired depth input means "use mine".
    An empty or blank string counts as no manual order."""
    masks = _as_masks(masks)
    num_layers, num_frames = masks.shape[:2]
    if manual is not None and not (isinstance(manual, str) and not manual.strip()):
        return manual_order(manual, num_frames, num_layers, "manual")
    if depth is not None:
        return order_from_depth(depth, masks, bright_is_near=bright_is_near, percentile=percentile,
                                smooth_frames=smooth_frames, hysteresis=hysteresis, resize_depth=resize_depth)
    return order_from_mask_position(masks, smooth_frames=smooth_frames, hysteresis=hysteresis)
