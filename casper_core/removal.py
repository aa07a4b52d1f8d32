"""Casper as a remover: video and object masks in, the removal contract out.

``remove_objects(pipeline, video [T,3,H,W], masks [N,T,1,H,W]) -> Removal(background [T,3,H,W], solos [N,T,3,H,W])``
is the same contract the weight-free clean plate keeps (``omnimatte_core.removal``). It builds the trimask jobs,
runs ``CasperPipeline.__call__`` (the raw call: ``[T,H,W,3]`` frames and named jobs) and reads its named outputs
back into the contract — the one place that knows the job names and the one-object case.
"""
from __future__ import annotations

import torch

from .defaults import working_size
from .shared import MASK_DILATION, Removal, check_masks, check_video
from .trimask import build_trimask_jobs

__all__ = ["remove_objects", "removal_from_result"]


def remove_objects(pipeline, video: torch.Tensor, masks: torch.Tensor, *, dilate: int = MASK_DILATION,
                   size: tuple[int, int] | None = None, occluders=None, **options) -> Removal | None:
    """Remove every object with its effects (the clean background) and, per object, all the others (its solo).

    Args:
        pipeline: a loaded `casper_core.CasperPipeline` or `casper_core.wan_pipeline.WanCasperPipeline` (same call,
            same result).
        video: ``[T,3,H,W]`` float frames in 0..1.
        masks: ``[N,T,1,H,W]`` (or ``[N,T,H,W]``) object masks in 0..1 at the video's length and size (binarised as
            by `casper_core.trimask.build_trimask_jobs`).
        dilate: square dilation of the masks in pixels (see `casper_core.trimask.build_trimask_jobs`).
        size: Casper's working ``(height, width)``, multiples of 16; None = `casper_core.defaults.working_size`
            of the video (384×672, or 672×384 for portrait video). The outputs come back at the video's size.
        occluders: the occluded-foreground recipe, a front-to-back order or per-object lists of the objects in
            front of each (`casper_core.trimask.build_trimask_jobs`); None = as released.
        **options: the pipeline call's options (``prompt``, ``steps``, ``seed``, ``window_frames``,
            ``overlap_frames``, ``batch_size``, ``progress``, ``live_progress``, …).

    Returns:
        `Removal` with ``background [T,3,H,W]`` and ``solos [N,T,3,H,W]``, float32 on the CPU; None where the
        pipeline returns None (the ranks of a `casper_core.distributed.JobParallelPipeline` other than the one that
        gathers the videos).
    """
    video = check_video(video)
    num_objects = check_masks(masks, video).shape[0]
    frames = video.permute(0, 2, 3, 1)  # the raw call's [T,H,W,3]
    # the masks as given: the trimask binarises them itself (at 240/255, as the reference)
    jobs = build_trimask_jobs(frames, masks[:, :, 0] if masks.ndim == 5 else masks, dilate=dilate,
                              occluders=occluders)
    height, width = size if size is not None else working_size(tuple(video.shape[-2:]))
    result = pipeline(frames, jobs, height=height, width=width, **options)
    return None if result is None else removal_from_result(result, video, num_objects=num_objects)


def removal_from_result(result, video: torch.Tensor, num_objects: int | None = None) -> Removal:
    """The `Removal` in a `CasperResult` (named ``[J,T,H,W,3]`` videos) of a run on ``video [T,3,H,W]``.

    ``background`` is the ``"background"`` job (the input when no such job ran); solo ``i`` is job ``"solo_i"``.
    With one object no solo job is made: its solo is the input video itself. ``num_objects`` None takes one solo per
    ``solo_i`` job that ran (one, the input, when none did, as after 'background only' jobs).
    """
    videos = result.videos.permute(0, 1, 4, 2, 3).float().clamp(0, 1)  # [J,T,3,H,W]
    by_name = dict(zip(result.names, videos))
    video = video.float().cpu()
    if num_objects is None:
        num_objects = max(1, sum(name.startswith("solo_") for name in result.names))
    solos = torch.stack([by_name.get(f"solo_{i}", video) for i in range(num_objects)])
    return Removal(background=by_name.get("background", video), solos=solos)
