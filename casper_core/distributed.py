"""Job-parallel Casper: the trimask jobs of one video spread over the processes of a ``torch.distributed`` group.

A decomposition of N objects is N + 1 Casper jobs over the same video: the clean background and one solo per object.
They are independent. Unless a shared ``generator`` is passed, the pipeline gives every job a fresh CPU generator
seeded with ``seed``, so a job's noise — and so its output — depends only on the video, its trimask and the settings,
not on the other jobs of the call or on the process that runs it. `JobParallelPipeline` wraps a loaded pipeline
(`casper_core.CasperPipeline` or `casper_core.wan_pipeline.WanCasperPipeline`) with the same call: every process
(one per GPU, as ``torchrun`` starts them) runs its share of the jobs — job ``j`` on rank ``j % world_size`` — and
the videos are sent to one rank (``dst``, rank 0 by default), which gets the `CasperResult` of all jobs in job
order; the other ranks get None.

Identity with one process: each rank runs its jobs one at a time (``batch_size=1``), exactly as a single process
does with ``batch_size=1``, so every video is bit for bit the single-process one for the same seed. A single
process's default batches all jobs into one transformer call; a batch's matrix products round differently from a
single job's, so against that default the videos agree only to the batching tolerance (1e-5 on the tiny fp32 model,
``tests/casper/test_pipeline.py``). Pass the same ``batch_size`` to both for an exact comparison.

What is not split, and why:

- The temporal windows of a long clip are not independent: the pipeline denoises them as temporal multidiffusion,
  blending the stepped latents of overlapping windows after *every* step, so each window's next step needs its
  neighbours' current one. Spreading a clip's windows over processes would need an all-reduce of the blended
  latents after every step (a different scheme, and not bit-identical: the sum order changes); one long window is
  the sequence-parallel case, see ``docs/scale_out.md``.
- A shared ``generator`` (the reference's behaviour) draws each job's noise after the jobs before it, so a job's
  noise depends on where it stands in the call; it is refused here.
- The layer fit optimises all objects together (one grouped network), so it stays on one process.

Every rank loads its own copy of the model and encodes the video and the prompt itself (cheap next to 50 steps).
Before any work the ranks compare a fingerprint of their inputs and settings, and after it they share whether their
jobs succeeded, so a mismatch or a failure on one rank raises on every rank instead of leaving the others waiting.

Launch: ``torchrun --nproc-per-node N -m casper_core.decompose ...`` (see that command's ``--casper-batch-size``);
`init_from_environment` joins the group torchrun describes in the environment.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .pipeline import CasperResult
from .trimask import TrimaskJobs

__all__ = ["JobParallelPipeline", "ProcessInfo", "assign_jobs", "init_from_environment", "is_active", "rank_device",
           "shutdown"]

EXCHANGE_CHUNK_BYTES = 256 << 20
"""Videos travel between ranks in chunks of whole frames of at most this size (bounds GPU memory under NCCL)."""


@dataclass(frozen=True)
class ProcessInfo:
    """This process's place in a group: global ``rank``, ``world_size``, ``local_rank`` on its machine, and the
    torch ``device`` it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: str


def environment_world_size() -> int:
    """Processes in the group torchrun describes in the environment (``WORLD_SIZE``); 1 when not launched so."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"WORLD_SIZE: expected an integer number of processes, got {text!r}") from None


def rank_device(device: str, local_rank: int, world_size: int) -> str:
    """The device one rank computes on: ``cuda`` becomes ``cuda:<local_rank>`` (one GPU per process); ``cpu`` stays.

    An explicit GPU index with several processes would put them all on one GPU, so it is refused."""
    parsed = torch.device(device)
    if parsed.type == "cpu" or world_size == 1:
        return device
    if parsed.index is not None:
        raise ValueError(f"--device {device!r}: with {world_size} processes each takes the GPU of its local rank; "
                         f"pass --device {parsed.type} (no index)")
    return f"{parsed.type}:{local_rank}"


def init_from_environment(device: str = "cpu") -> ProcessInfo | None:
    """Join the process group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``, ``MASTER_PORT``); None when this process runs alone (no ``WORLD_SIZE`` above 1).

    The backend is NCCL for CUDA devices and gloo otherwise; each rank's CUDA device is made current
    (`rank_device`). A group that is already initialised is joined as it is."""
    world_size = environment_world_size()
    if world_size <= 1:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    own_device = rank_device(device, local_rank, world_size)
    parsed = torch.device(own_device)
    if parsed.type == "cuda":
        torch.cuda.set_device(parsed)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if parsed.type == "cuda" else "gloo")
    return ProcessInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                       device=own_device)


def is_active(group=None) -> bool:
    """Whether a process group of more than one process is initialised (so Casper's jobs can be spread)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def shutdown(synchronise: bool = False) -> None:
    """Leave the process group, if one was joined. ``synchronise`` (on the success path only: a rank that failed
    would never arrive) waits for every rank first; a rank that tears its connections down while another still sends
    to it can abort that one (gloo: "terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        if synchronise:
            dist.barrier()
        dist.destroy_process_group()


def assign_jobs(num_jobs: int, world_size: int) -> list[list[int]]:
    """Job indices per rank: job ``j`` runs on rank ``j % world_size`` (the jobs of a video cost the same, so
    round robin balances them; ranks beyond the job count get none)."""
    if num_jobs < 1 or world_size < 1:
        raise ValueError(f"assign_jobs: expected at least one job and one rank, got {num_jobs} jobs, "
                         f"{world_size} ranks")
    return [list(range(rank, num_jobs, world_size)) for rank in range(world_size)]


def _as_jobs(jobs) -> TrimaskJobs:
    """The pipeline's ``jobs`` argument as named `TrimaskJobs` (a bare trimask tensor gets the pipeline's names)."""
    if isinstance(jobs, TrimaskJobs):
        return jobs
    if isinstance(jobs, torch.Tensor) and jobs.ndim in (3, 4):
        trimasks = jobs[None] if jobs.ndim == 3 else jobs
        return TrimaskJobs([f"job_{i}" for i in range(trimasks.shape[0])], trimasks)
    shape = tuple(jobs.shape) if isinstance(jobs, torch.Tensor) else type(jobs).__name__
    raise TypeError(f"jobs: expected TrimaskJobs or a trimask tensor [J,T,H,W] / [T,H,W], got {shape}")


def _sampled_digest(tensor: torch.Tensor) -> str:
    """A digest of about a million evenly spaced values: cheap on long HD clips, and different files differ."""
    flat = tensor.detach().reshape(-1)
    stride = max(1, flat.numel() >> 20)
    values = flat[::stride].float().cpu().contiguous().numpy()
    return hashlib.sha1(values.tobytes()).hexdigest()


class JobParallelPipeline:
    """A Casper pipeline whose jobs run spread over the processes of a ``torch.distributed`` group.

    Every rank makes the same call with the same inputs; rank ``dst`` gets the `CasperResult` of all jobs in job
    order, the others None (so `casper_core.remove_objects` returns None there). See the module docstring for what
    is identical to a single process and what is not split.

    Args:
        pipeline: a loaded `CasperPipeline` or `WanCasperPipeline`, on this rank's device.
        group: the process group (None = the default group).
        dst: the rank (in `group`) that receives the videos.
    """

    def __init__(self, pipeline, *, group=None, dst: int = 0):
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("JobParallelPipeline: no torch.distributed process group is initialised; launch with "
                               "torchrun (then call casper_core.distributed.init_from_environment) or call "
                               "torch.distributed.init_process_group first")
        world_size = dist.get_world_size(group)
        if not 0 <= dst < world_size:
            raise ValueError(f"dst: expected a rank in 0..{world_size - 1}, got {dst}")
        self.pipeline = pipeline
        self.group = group
        self.dst = dst
        self.rank = dist.get_rank(group)
        self.world_size = world_size

    def __call__(self, video: torch.Tensor, jobs, *, batch_size: int | None = 1, generator=None, **options):
        """Run this rank's share of `jobs` on `video` (the pipeline's ``[T,H,W,3]`` call) and gather the videos.

        Args:
            video, jobs, **options: as `CasperPipeline.__call__` (the same on every rank; checked).
            batch_size: jobs per transformer batch on each rank; 1 (default) runs them one at a time, the setting
                whose results are bit-identical to a single process with the same ``batch_size``; None batches a
                rank's whole share.
            generator: refused (a shared generator makes each job's noise depend on the jobs before it).

        Returns:
            On rank ``dst``: `CasperResult` with every job's ``[T,H,W,3]`` video in job order. Elsewhere: None.
        """
        if generator is not None:
            raise ValueError("generator: a generator shared by all jobs draws each job's noise after the jobs before "
                             "it, so the jobs cannot run apart; leave it None (every job then draws from a fresh "
                             "generator seeded with `seed`)")
        named = _as_jobs(jobs)
        if not isinstance(video, torch.Tensor) or video.ndim != 4:
            shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise ValueError(f"video: expected a [T,H,W,3] tensor in 0..1, got {shape}")
        # 1. Same inputs and settings on every rank (else the gathered videos would mix different runs)
        settings = {key: repr(value) for key, value in sorted(options.items()) if not callable(value)}
        fingerprint = (named.names, tuple(video.shape), _sampled_digest(video), _sampled_digest(named.trimasks),
                       batch_size, settings)
        fingerprints = self._all_gather(fingerprint)
        differing = [rank for rank, other in enumerate(fingerprints) if other != fingerprints[0]]
        if differing:
            raise ValueError(f"JobParallelPipeline: ranks {differing} were given other inputs or settings than rank 0 "
                             "(video, jobs or options); every rank must make the same call")

        # 2. This rank's share, one job at a time unless asked otherwise
        mine = assign_jobs(len(named), self.world_size)[self.rank]
        local: dict[int, torch.Tensor] = {}
        failure = None
        if mine:
            try:
                share = named.select([named.names[j] for j in mine])
                result = self.pipeline(video, share, batch_size=batch_size, **options)
                local = {j: result.videos[k] for k, j in enumerate(mine)}
            except Exception as error:  # shared below, so the other ranks stop too instead of waiting
                failure = error
        statuses = self._all_gather(None if failure is None else f"{type(failure).__name__}: {failure}")
        failed = {rank: status for rank, status in enumerate(statuses) if status is not None}
        if failed:
            lines = "; ".join(f"rank {rank}: {status}" for rank, status in failed.items())
            raise RuntimeError(f"Casper jobs failed ({lines})") from failure

        # 3. The videos to rank dst, in job order
        frames, height, width = video.shape[:3]
        videos = [self._exchange(j, local.get(j), (frames, height, width, 3)) for j in range(len(named))]
        if self.rank != self.dst:
            return None
        return CasperResult(names=list(named.names), videos=torch.stack(videos))

    # --- communication ---------------------------------------------------------------------------------------------
    def _all_gather(self, value) -> list:
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, value, group=self.group)
        return gathered

    def _global_rank(self, group_rank: int) -> int:
        return group_rank if self.group is None else dist.get_global_rank(self.group, group_rank)

    def _exchange_device(self) -> torch.device:
        # NCCL moves only GPU tensors; gloo moves CPU tensors.
        if dist.get_backend(self.group) == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _exchange(self, job: int, video: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor | None:
        """Job ``job``'s ``[T,H,W,3]`` float32 video on rank dst (sent there by its owner, in frame chunks)."""
        owner = job % self.world_size
        if owner == self.dst:
            return video
        if self.rank not in (owner, self.dst):
            return None
        device = self._exchange_device()
        frame_bytes = shape[1] * shape[2] * shape[3] * 4
        chunk = max(1, EXCHANGE_CHUNK_BYTES // frame_bytes)
        if self.rank == owner:
            for begin in range(0, shape[0], chunk):
                dist.send(video[begin:begin + chunk].to(device, torch.float32).contiguous(),
                          dst=self._global_rank(self.dst), group=self.group)
            return None
        received = torch.empty(shape, dtype=torch.float32)
        for begin in range(0, shape[0], chunk):
            part = torch.empty((min(chunk, shape[0] - begin), *shape[1:]), dtype=torch.float32, device=device)
            dist.recv(part, src=self._global_rank(owner), group=self.group)
            received[begin:begin + chunk] = part.cpu()
        return received
