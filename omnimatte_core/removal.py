"""The removal contract: what every remover hands to the layer fit.

A remover takes a video ``[T,3,H,W]`` and object masks ``[N,T,1,H,W]`` and returns a :class:`Removal`: the clean
background (every object removed with its effects) and one solo video per object (that object and its effects
kept, every other object removed). Two removers keep it:

- the weight-free clean plate, :func:`omnimatte_core.effect_aware.effect_aware_removal` (its
  ``EffectAwareRemoval`` is a ``Removal`` with the plate and the internal fits added);
- Casper, ``casper_core.removal.remove_objects(pipeline, video, masks)``.

Why the type lives here, on the layer side: ``casper_core`` may import ``omnimatte_core`` but never the other way
round (the weight-free path must not pull in the Casper stack), so the one place both removers and the fit can reach
is ``omnimatte_core``; it needs nothing but torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Removal"]


@dataclass
class Removal:
    """What a remover returns (shapes checked on creation, values as the remover made them, 0..1).

    - ``background [T,3,H,W]``: the video with every object removed, effects included;
    - ``solos [N,T,3,H,W]``: per object, the video with only that object (and its effects); with one object that
      is the input video itself.
    """

    background: torch.Tensor
    solos: torch.Tensor

    def __post_init__(self):
        for name, ndim, layout in (("background", 4, "[T,3,H,W]"), ("solos", 5, "[N,T,3,H,W]")):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor {layout}, got {type(value).__name__}")
            if value.ndim != ndim or value.shape[-3] != 3:
                raise ValueError(f"{name} must be {layout} (RGB, 0..1), got {list(value.shape)}")
        if self.solos.shape[0] < 1:
            raise ValueError("solos must hold one video per object (N >= 1), got N = 0")
        if tuple(self.solos.shape[1:]) != tuple(self.background.shape):
            raise ValueError(f"solos are {list(self.solos.shape)} but background is {list(self.background.shape)}; "
                             "expected [N,T,3,H,W] with the background's T, H and W")

    @property
    def num_objects(self) -> int:
        """N, the number of solo videos."""
        return int(self.solos.shape[0])
