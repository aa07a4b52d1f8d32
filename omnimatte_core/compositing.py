"""Back-to-front over-compositing of RGBA layers, composited opacity, and detail transfer.

With layers sorted front to back per frame (``order[t,0]`` nearest), layer ``i`` reaches the camera with its
*composited opacity* ``w_i = alpha_i * prod_{j in front of i} (1 - alpha_j)``, and the background with the total
transmission ``tau = prod_j (1 - alpha_j)``. The weights sum to one (``sum_i w_i + tau = 1``), and the over-composite
back to front is ``sum_i w_i * rgb_i + tau * background``.

Detail transfer (supplement Sec. D): the fitted layers and the background are smooth or were hallucinated by an
upsampler, while the input video holds the true detail. Where one layer (or the background) alone makes the pixel,
the input pixel belongs to it, so it is written back there:

- into layer ``i`` where ``w_i >= threshold`` (default 0.98; the paper says "reaches 1"),
- into the background where ``tau >= threshold``,
- optionally (``opaque_inside_masks``) each object is first made opaque inside its own object mask (alpha raised to
  the mask), so holes the fit left inside a solid object get filled with the input too.

Rather than pasting the input pixel as is, the layer colour is solved so that the composite equals the input:
``rgb_i <- rgb_i + (input - composite) / w_i`` (clamped to 0..1). Where ``w_i = 1`` this *is* the paper's copy; for
``w_i`` in ``threshold..1`` the few percent that shine through from behind are accounted for, so after the transfer
the layers reproduce the input exactly in every transferred pixel (except where the clamp bites, by at most
``1 - threshold``). Since ``threshold > 0.5``, at most one of the N+1 weights can pass it at a pixel: the regions
never overlap. Transparent regions (soft shadows, reflections, edges) are left untouched: there the input is a mix
that no single layer owns.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .layers import Layers, check_order

DETAIL_THRESHOLD = 0.98
"""Composited opacity from which a layer owns a pixel for detail transfer (the paper: "reaches 1"; 0.98 also catches
the nearly opaque pixels a fit produces)."""
_CHUNK_ELEMENTS = 1 << 26  # per-chunk work (layers x frames x pixels); bounds temporaries on long HD clips


def _check_stack(rgb: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor | None = None) -> tuple:
    """Shape checks naming the argument; returns ``(N, T, H, W)``."""
    for name, x in (("rgb", rgb), ("alpha", alpha)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if rgb.ndim != 5 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be [N,T,3,H,W], got {list(rgb.shape)}")
    n, t, _, h, w = rgb.shape
    if tuple(alpha.shape) != (n, t, 1, h, w):
        raise ValueError(f"alpha must be [N,T,1,H,W] = {[n, t, 1, h, w]} to match rgb, got {list(alpha.shape)}")
    if background is not None:
        if not isinstance(background, torch.Tensor):
            raise TypeError(f"background must be a torch.Tensor, got {type(background).__name__}")
        if tuple(background.shape) != (t, 3, h, w):
            raise ValueError(f"background must be [T,3,H,W] = {[t, 3, h, w]} to match the layers, "
                             f"got {list(background.shape)}")
    return n, t, h, w


def _frame_chunks(num_layers: int, num_frames: int, height: int, width: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, (num_layers + 1) * 3 * height * width))
    for first in range(0, num_frames, step):
        yield slice(first, min(num_frames, first + step))


def composited_opacity(alpha: torch.Tensor, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each layer's contribution to the camera and the background's transmission.

    Args:
        alpha: ``[N,T,1,H,W]`` layer opacities, 0..1.
        order: ``[T,N]`` layer indices front to back per frame.

    Returns:
        ``(opacity [N,T,1,H,W], transmission [T,1,H,W])``: ``opacity[i] = alpha_i * prod(1 - alpha_j)`` over the
        layers in front of ``i`` in that frame, ``transmission = prod_j (1 - alpha_j)``; they sum to 1 per pixel.
    """
    if not isinstance(alpha, torch.Tensor) or alpha.ndim != 5 or alpha.shape[2] != 1:
        raise ValueError(f"alpha must be a tensor [N,T,1,H,W], got "
                         f"{list(alpha.shape) if isinstance(alpha, torch.Tensor) else type(alpha).__name__}")
    n, t = alpha.shape[:2]
    order = check_order(order, t, n).to(alpha.device)
    frames = torch.arange(t, device=alpha.device)
    by_depth = alpha[order.t(), frames]  # [N,T,1,H,W], rank 0 nearest
    clear = 1 - by_depth
    # transmission in front of rank k: product over ranks < k (exclusive cumulative product)
    in_front = torch.cumprod(torch.cat([torch.ones_like(clear[:1]), clear[:-1]]), dim=0)
    opacity_by_depth = by_depth * in_front
    transmission = in_front[-1] * clear[-1]
    rank = torch.argsort(order, dim=1)  # rank[t, i]: where layer i sits in frame t
    return opacity_by_depth[rank.t(), frames], transmission


def composite(rgb: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Over-composite N layers back to front onto a background.

    Args:
        rgb: ``[N,T,3,H,W]`` straight (not premultiplied) colour, 0..1.
        alpha: ``[N,T,1,H,W]`` opacity, 0..1.
        background: ``[T,3,H,W]``, 0..1.
        order: ``[T,N]`` front to back per frame.

    Returns ``[T,3,H,W]`` on the layers' device (the same as applying ``over`` from the farthest layer forward).
    """
    n, t, h, w = _check_stack(rgb, alpha, background)
    order = check_order(order, t, n)
    out = torch.empty_like(background)
    for span in _frame_chunks(n, t, h, w):
        opacity, transmission = composited_opacity(alpha[:, span], order[span])
        out[span] = (opacity * rgb[:, span]).sum(dim=0) + transmission * background[span]
    return out


def reconstruct(layers: Layers) -> torch.Tensor:
    """The video ``[T,3,H,W]`` the layers make: all layers over their background in their order."""
    if not isinstance(layers, Layers):
        raise TypeError(f"layers must be an omnimatte_core.layers.Layers, got {type(layers).__name__}")
    return composite(layers.rgb, layers.alpha, layers.background, layers.order)


@dataclass
class DetailTransfer:
    """Result of :func:`detail_transfer`.

    - ``layers``: new :class:`Layers` (rgb, background and, with ``opaque_inside_masks``, alpha changed).
    - ``layer_regions [N,T,1,H,W]`` bool: where input detail went into each layer.
    - ``background_region [T,1,H,W]`` bool: where it went into the background.
    """

    layers: Layers
    layer_regions: torch.Tensor
    background_region: torch.Tensor

    @property
    def fraction(self) -> float:
        """Share of all pixels (0..1) that received input detail, in a layer or the background."""
        covered = self.layer_regions.any(dim=0) | self.background_region
        return float(covered.float().mean())


def detail_transfer(layers: Layers, video: torch.Tensor, *, threshold: float = DETAIL_THRESHOLD,
                    opaque_inside_masks: bool = False, into_background: bool = True) -> DetailTransfer:
    """Write the input video's detail into the layers where one layer alone makes the pixel (see module doc).

    Args:
        layers: the fitted :class:`Layers` (same size and length as ``video``), with their per-frame order.
        video: ``[T,3,H,W]`` the original input, 0..1.
        threshold: composited opacity (or background transmission) from which a layer owns a pixel, in (0.5, 1].
            1.0 is the paper's "reaches 1"; 0.98 also catches the nearly opaque pixels a fit produces.
        opaque_inside_masks: treat each object as solid inside its own object mask (``layers.masks`` required):
            alpha is raised to the mask first, then the transfer runs.
        into_background: also transfer into the background where all layers are (nearly) transparent.

    Returns a :class:`DetailTransfer` with new tensors; ``layers`` and ``video`` are not modified. After it,
    :func:`reconstruct` equals ``video`` inside every transferred region (up to float rounding, and up to
    ``1 - threshold`` where the solved colour had to be clamped to 0..1).
    """
    # 1. Check inputs
    if not isinstance(layers, Layers):
        raise TypeError(f"layers must be an omnimatte_core.layers.Layers, got {type(layers).__name__}")
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"video must be a torch.Tensor [T,3,H,W], got {type(video).__name__}")
    n, t, h, w = _check_stack(layers.rgb, layers.alpha, layers.background)
    if tuple(video.shape) != (t, 3, h, w):
        raise ValueError(f"video must be [T,3,H,W] = {[t, 3, h, w]} to match the layers, got {list(video.shape)}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.5 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0.5, 1] (composited opacity that counts as opaque), got {threshold!r}")
    if opaque_inside_masks and layers.masks is None:
        raise ValueError("opaque_inside_masks=True needs layers.masks (the object masks [N,T,1,H,W])")
    video = video.to(device=layers.device, dtype=layers.rgb.dtype)

    # 2. New tensors (the inputs stay untouched)
    alpha = layers.alpha.clone()
    if opaque_inside_masks:
        alpha = torch.maximum(alpha, layers.masks.to(alpha))
    rgb = layers.rgb.clone()
    background = layers.background.clone()
    layer_regions = torch.zeros(n, t, 1, h, w, dtype=torch.bool, device=layers.device)
    background_region = torch.zeros(t, 1, h, w, dtype=torch.bool, device=layers.device)

    # 3. Per chunk of frames: weights, residual to the input, colour solved where one weight passes the threshold
    for span in _frame_chunks(n, t, h, w):
        opacity, transmission = composited_opacity(alpha[:, span], layers.order[span])
        recon = (opacity * rgb[:, span]).sum(dim=0) + transmission * background[span]
        residual = video[span] - recon  # [c,3,H,W]
        owned = opacity >= threshold  # [N,c,1,H,W]; disjoint across layers since threshold > 0.5
        solved = (rgb[:, span] + residual / opacity.clamp_min(threshold)).clamp(0, 1)
        rgb[:, span] = torch.where(owned, solved, rgb[:, span])
        layer_regions[:, span] = owned
        if into_background:
            bg_owned = transmission >= threshold
            bg_solved = (background[span] + residual / transmission.clamp_min(threshold)).clamp(0, 1)
            background[span] = torch.where(bg_owned, bg_solved, background[span])
            background_region[span] = bg_owned

    return DetailTransfer(layers.replace(rgb=rgb, alpha=alpha, background=background), layer_regions,
                          background_region)
