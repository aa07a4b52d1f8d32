"""What the two Casper pipelines (CogVideoX-Fun and Wan2.1-Fun) share.

Both take the same inputs (a ``[T,H,W,3]`` video and trimask jobs), place their components the same way under the
memory modes, prepare pixels and trimasks alike and return outputs at the input size; only the model-specific steps
(text encoding, latent layout, denoising) differ and stay in `casper_core.pipeline` and `casper_core.wan_pipeline`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .temporal import TEMPORAL_COMPRESSION, pad_frames
from .trimask import TRIMASK_VALUES, TrimaskJobs, check_unit_values, quantize_trimask

# The neutral trimask value handed to the model (the reference stores 127 of 255).
NEUTRAL_VALUE = 127.0 / 255.0
# Pixels × patch: sizes must be multiples of this (VAE 8 × transformer patch 2 for both models).
SIZE_MULTIPLE = 16


class PipelineComponents:
    """The five components, where inputs go, the compute dtype and the release after a run.

    Components (attributes of the same names): ``transformer``, ``vae``, ``text_encoder``, ``tokenizer``,
    ``scheduler``. They must already sit where they compute (or be managed by a memory mode's hooks, see
    `casper_core.memory`); `set_execution_device` tells the pipeline where inputs go when the weights are offloaded.
    """

    def __init__(self, transformer, vae, text_encoder, tokenizer, scheduler):
        self.transformer = transformer
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.load_report = None
        self.memory_plan = None
        self._execution_device_override: torch.device | None = None
        self.compute_dtype: torch.dtype | None = None

    @property
    def execution_device(self) -> torch.device:
        """Where inputs are placed: the device set by `set_execution_device`, else the transformer's."""
        if self._execution_device_override is not None:
            return self._execution_device_override
        for param in self.transformer.parameters():
            if param.device.type != "meta":
                return param.device
        return torch.device("cpu")

    @property
    def _execution_device(self) -> torch.device:
        # diffusers pipelines' name for the same thing
        return self.execution_device

    @execution_device.setter
    def execution_device(self, device) -> None:
        self.set_execution_device(device)

    def set_execution_device(self, device) -> None:
        """Compute on `device` (needed when the weights sit on the CPU between uses)."""
        self._execution_device_override = None if device is None else torch.device(device)

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of latents and embeddings (the text encoder's, as in the reference; `compute_dtype` overrides)."""
        if self.compute_dtype is not None:
            return self.compute_dtype
        return next(self.text_encoder.parameters()).dtype

    def _to_device(self, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        return tensor.to(device=self.execution_device, dtype=dtype or tensor.dtype)

    def _release(self) -> None:
        # Offload modes move every component back to the CPU between runs.
        if self.memory_plan is not None and hasattr(self.memory_plan, "release"):
            self.memory_plan.release()


# --- input checks ------------------------------------------------------------------------------------------------
def check_video_and_jobs(video, jobs) -> tuple[list[str], torch.Tensor]:
    """Check the video ``[T,H,W,3]`` and the jobs' type and values; returns the job names and trimasks ``[J,...]``.

    The trimasks' frame count and size against the video are left to the caller (each pipeline words it its way).
    """
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[-1] != 3:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video: expected a [T,H,W,3] tensor in 0..1, got {shape}")
    if not video.is_floating_point():
        raise ValueError(f"video: expected float values in 0..1, got dtype {video.dtype}")
    if video.shape[0] < 1:
        raise ValueError("video: has no frames")
    check_unit_values("video", video, "finite RGB values in 0..1")
    if isinstance(jobs, TrimaskJobs):
        names, trimasks = jobs.names, jobs.trimasks
    elif isinstance(jobs, torch.Tensor):
        trimasks = jobs[None] if jobs.ndim == 3 else jobs
        if trimasks.ndim != 4:
            raise ValueError(f"jobs: expected a trimask tensor [J,T,H,W] or [T,H,W], got {tuple(jobs.shape)}")
        names = [f"job_{i}" for i in range(trimasks.shape[0])]
    else:
        raise TypeError(f"jobs: expected TrimaskJobs or a trimask tensor, got {type(jobs).__name__}")
    if trimasks.shape[0] == 0:
        raise ValueError("jobs: no trimask jobs")
    check_unit_values("jobs", trimasks, TRIMASK_VALUES)
    return list(names), trimasks


def check_size_steps_guidance(video_size: tuple[int, int], height, width, steps, guidance_scale) -> None:
    """Check the working size (both or neither of `height`, `width`; multiples of 16), `steps` and the guidance."""
    if (height is None) != (width is None):
        raise ValueError(f"height, width: give both or neither, got height={height}, width={width}")
    work = (height, width) if height is not None else video_size
    for name, value in zip(("height", "width"), work):
        if value <= 0 or value % SIZE_MULTIPLE:
            where = "" if height is not None else " of the video (pass height=/width= to resize, or pad it)"
            raise ValueError(f"{name}: expected a positive multiple of {SIZE_MULTIPLE}{where}, got {value}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an integer ≥ 1, got {steps!r}")
    if guidance_scale < 1.0:
        raise ValueError(f"guidance_scale: expected ≥ 1 (1 = no guidance), got {guidance_scale}")


def check_overlap_frames(overlap_frames, frames: int, window_frames: int, window: int, clip_latents: int) -> None:
    """Check `overlap_frames`: an integer ≥ 0, and shorter than the window (`window` latent frames) when the clip
    (`clip_latents` latent frames) needs several windows."""
    if not isinstance(overlap_frames, int) or overlap_frames < 0:
        raise ValueError(f"overlap_frames: expected an integer ≥ 0, got {overlap_frames!r}")
    # The overlap matters only when the clip needs several windows; a clip that fits one ignores it.
    if clip_latents > window and overlap_frames // TEMPORAL_COMPRESSION >= window:
        raise ValueError(
            f"overlap_frames: {frames} frames need several windows of {window_frames} frames ({window} latent "
            f"frames), so the overlap must be shorter: expected overlap_frames // 4 < {window}, "
            f"got {overlap_frames!r}"
        )


def check_batch_size(batch_size) -> None:
    """`batch_size`: None or an integer ≥ 1."""
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size: expected None or an integer ≥ 1, got {batch_size!r}")


def tokenize_prompt(tokenizer, prompt, max_length: int):
    """The tokenizer's output for `prompt`: padded or truncated to `max_length` tokens, special tokens added."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt: expected a string, got {type(prompt).__name__}")
    return tokenizer(
        [prompt], padding="max_length", max_length=max_length, truncation=True,
        add_special_tokens=True, return_tensors="pt",
    )


# --- the call's model-independent steps ----------------------------------------------------------------------------
def prepare_pixels_and_masks(
    video: torch.Tensor, trimasks: torch.Tensor, work_size: tuple[int, int], total_frames: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels ``[1,3,Tp,H,W]`` in −1..1 and model trimasks ``[J,1,Tp,H,W]`` (neutral at `NEUTRAL_VALUE`) at the
    working size, padded to `total_frames` frames with `casper_core.temporal.pad_frames`."""
    pixels = video.detach().float().clamp(0, 1).permute(3, 0, 1, 2)  # [3,T,H,W]
    masks = trimasks.detach().float()  # [J,T,H,W]
    if tuple(work_size) != tuple(video.shape[1:3]):
        pixels = F.interpolate(pixels, size=work_size, mode="area")
        masks = F.interpolate(masks, size=work_size, mode="area")
    masks = quantize_trimask(masks)
    masks = torch.where(masks == 0.5, NEUTRAL_VALUE, masks)
    pixels = pad_frames(pixels, total_frames, dim=1)[None] * 2.0 - 1.0
    masks = pad_frames(masks, total_frames, dim=1)[:, None]
    return pixels, masks


def job_generator(seed: int, generator: torch.Generator | None) -> torch.Generator:
    """The generator of the first job's noise: the shared `generator`, else a fresh CPU one seeded with `seed`."""
    return generator if generator is not None else torch.Generator("cpu").manual_seed(seed)


def further_jobs_noise(latent_shape, dtype, generator: torch.Generator | None, num_jobs: int) -> list[torch.Tensor]:
    """With a shared generator each job after the first draws its own noise; with fresh ones, none is needed."""
    if generator is None:
        return []
    return [torch.randn(latent_shape, generator=generator, dtype=dtype) for _ in range(num_jobs - 1)]


def job_batches(num_jobs: int, batch_size: int | None) -> list[slice]:
    """Slices of at most `batch_size` jobs covering all `num_jobs` (None: all jobs in one batch)."""
    batch_size = num_jobs if batch_size is None else min(batch_size, num_jobs)
    num_batches = -(-num_jobs // batch_size)
    return [slice(b * batch_size, min((b + 1) * batch_size, num_jobs)) for b in range(num_batches)]


def batch_start_noise(noise: list[torch.Tensor], shared_generator: bool, job_slice: slice) -> torch.Tensor:
    """Starting noise of a batch: the first job's noise for every job (fresh generators all draw it), or each
    job's own draw (a shared generator)."""
    if not shared_generator:
        return noise[0].expand(job_slice.stop - job_slice.start, *noise[0].shape[1:])
    return torch.cat(noise[job_slice])


def middle_latent(frames: int, num_latents: int) -> int:
    """The latent frame of the clip's middle frame (for previews)."""
    return min((frames // 2 + 3) // 4, num_latents - 1)


def to_output_video(
    decoded: torch.Tensor, frames: int, work_size: tuple[int, int], in_size: tuple[int, int]
) -> torch.Tensor:
    """A decoded job ``[3,T',h,w]`` in 0..1 at the working size, cropped to `frames` and resized to the input
    size: ``[T,H,W,3]`` float32 on the CPU."""
    decoded = decoded[:, :frames]
    if tuple(work_size) != tuple(in_size):
        decoded = F.interpolate(
            decoded, size=in_size, mode="bicubic", align_corners=False, antialias=True
        ).clamp(0, 1)
    return decoded.permute(1, 2, 3, 0).float().cpu()
