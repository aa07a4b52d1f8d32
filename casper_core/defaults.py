"""Casper's released settings: the one source of the defaults and choices that the pipeline, the ComfyUI nodes and
the main command share.

The mask dilation (11 px) is shared with the weight-free clean plate and so lives on the layer side
(``omnimatte_core.masks.MASK_DILATION``); the memory modes are listed by ``casper_core.memory.MEMORY_MODES``.
"""
from __future__ import annotations

__all__ = ["PROMPT", "STEPS", "SEED", "WINDOW_FRAMES", "OVERLAP_FRAMES", "WORK_SIZE", "DTYPES", "working_size"]

PROMPT = "empty scene"
"""The text prompt of every release run."""
STEPS = 50
"""DDIM denoising steps."""
SEED = 0
"""Seed of the initial noise (the paper's)."""
WINDOW_FRAMES = 85
"""Frames per temporal window (4k+1; 22 latent frames)."""
OVERLAP_FRAMES = 16
"""Frames shared by neighbouring windows (4 latent frames)."""
WORK_SIZE = (384, 672)
"""``(height, width)`` Casper was trained at, for landscape video; portrait video runs at ``(672, 384)``."""
DTYPES = ("bf16", "fp32")
"""Weight precisions offered (fp16 is not: CogVideoX 1.5 overflows in it); the first is the default."""


def working_size(size: tuple[int, int]) -> tuple[int, int]:
    """Casper's working ``(height, width)`` for a video of ``size = (H, W)``: :data:`WORK_SIZE`, turned upright for
    portrait video (H > W)."""
    height, width = size
    return WORK_SIZE if width >= height else WORK_SIZE[::-1]
