"""The ``Layers`` container: N RGBA omnimatte layers, their clean background and their per-frame order.

One validated object passed between fitting, ordering, compositing, editing, export and the ComfyUI nodes, so every
consumer can rely on the same shapes and ranges without re-checking them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .checks import check_tensor


def check_order(order, num_frames: int, num_layers: int, name: str = "order") -> torch.Tensor:
    """Validate a per-frame layer order and return it as an int64 CPU tensor ``[T,N]``.

    ``order[t]`` must be a permutation of ``0..N-1`` listing layer indices front to back (``order[t,0]`` nearest).
    Raises ``ValueError`` naming ``name`` otherwise.
    """
    try:
        order = torch.as_tensor(order).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{name} must be an integer tensor [T,N] of layer indices, got {type(order).__name__}") \
            from error
    if order.is_floating_point() or order.is_complex() or order.dtype == torch.bool:
        if order.is_floating_point() and bool((order == order.round()).all()):
            order = order.long()  # 0.0/1.0 from a float pipeline are still unambiguous indices
        else:
            raise ValueError(f"{name} must hold integer layer indices, got dtype {order.dtype}")
    order = order.long()
    if tuple(order.shape) != (num_frames, num_layers):
        raise ValueError(f"{name} must be [T,N] = [{num_frames},{num_layers}] (front to back per frame), "
                         f"got {list(order.shape)}")
    expected = torch.arange(num_layers).expand(num_frames, num_layers)
    bad = (order.sort(dim=1).values != expected).any(dim=1)
    if bool(bad.any()):
        frame = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name}[{frame}] = {order[frame].tolist()} is not a permutation of 0..{num_layers - 1}")
    return order


@dataclass
class Layers:
    """N RGBA layers over a clean background, with the per-frame depth order.

    Shapes (N layers, T frames, H x W pixels); all colour/alpha tensors floating point in 0..1 on one device:

    - ``rgb [N,T,3,H,W]``: straight (not premultiplied) colour of each layer.
    - ``alpha [N,T,1,H,W]``: opacity of each layer (object plus its effects).
    - ``background [T,3,H,W]``: the clean background plate.
    - ``order [T,N]`` int64: per frame the layer indices **front to back** (``order[t,0]`` nearest); composite back to
      front. ``None`` means ``0,1,...,N-1`` in every frame. Always stored as an int64 CPU tensor (it is metadata;
      consumers move it where they need it).
    - ``names``: one display/file name per layer; ``None`` means ``layer_0, layer_1, ...``.
    - ``masks [N,T,1,H,W]`` or ``None``: the object masks the layers were fitted from (0..1), used by detail transfer.
    - ``fps``: frame rate for export and retiming (frames per second, > 0).

    ``__post_init__`` validates everything and raises ``ValueError``/``TypeError`` naming the field. Use
    ``dataclasses.replace(layers, alpha=...)`` (or :meth:`replace`) to get a validated modified copy; nothing here
    mutates tensors in place.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    background: torch.Tensor
    order: torch.Tensor | None = None
    names: list[str] | None = None
    masks: torch.Tensor | None = None
    fps: float = 24.0

    def __post_init__(self):
        rgb = check_tensor("rgb", self.rgb, (None, None, 3, None, None))
        n, t, _, h, w = rgb.shape
        check_tensor("alpha", self.alpha, (n, t, 1, h, w))
        check_tensor("background", self.background, (t, 3, h, w))
        for name in ("alpha", "background"):
            if getattr(self, name).device != rgb.device:
                raise ValueError(f"{name} is on {getattr(self, name).device} but rgb is on {rgb.device}; "
                                 "all layer tensors must be on one device")
        if self.masks is not None:
            check_tensor("masks", self.masks, (n, t, 1, h, w))
        self.order = (torch.arange(n).expand(t, n).clone() if self.order is None
                      else check_order(self.order, t, n, "order"))
        if self.names is None:
            self.names = [f"layer_{i}" for i in range(n)]
        else:
            if isinstance(self.names, str) or len(self.names) != n:
                raise ValueError(f"names must be a list of {n} layer names (one per layer), got {self.names!r}")
            self.names = [str(x) for x in self.names]
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not math.isfinite(self.fps) \
                or self.fps <= 0:
            raise ValueError(f"fps must be a positive frame rate (frames per second), got {self.fps!r}")
        self.fps = float(self.fps)

    @property
    def num_layers(self) -> int:
        """N, the number of object layers (the background is not counted)."""
        return int(self.rgb.shape[0])

    @property
    def num_frames(self) -> int:
        """T, the number of frames."""
        return int(self.rgb.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` in pixels."""
        return int(self.rgb.shape[3]), int(self.rgb.shape[4])

    @property
    def device(self) -> torch.device:
        return self.rgb.device

    def replace(self, **changes) -> "Layers":
        """A validated copy with some fields replaced (tensors not named are shared, not copied)."""
        return dataclasses.replace(self, **changes)

    def to(self, device) -> "Layers":
        """A copy with every colour/alpha/mask tensor on ``device`` (``order`` stays on the CPU)."""
        masks = None if self.masks is None else self.masks.to(device)
        return self.replace(rgb=self.rgb.to(device), alpha=self.alpha.to(device),
                            background=self.background.to(device), masks=masks)
