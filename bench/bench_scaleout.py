"""Benchmark job-parallel Casper (`casper_core.distributed`): one video's N + 1 jobs over the processes torchrun
starts, on Casper's real-size architecture with random weights (the weights of every rank are the same).

Every rank builds the CogVideoX-Fun-V1.5-5b-InP transformer, VAE and T5 encoder as ``bench_casper.py`` does (bf16,
random, on its own GPU), warms up with a one-step job, then all ranks run the jobs of one video (the clean background
and one solo per object; 85 frames at 384×672 by default) through `JobParallelPipeline` with ``--steps`` DDIM steps.
Reported: wall time from the common start to rank 0 holding every video (jobs run + the transfer to rank 0), each
rank's own compute time (balance), jobs per hour, and the same extrapolated to 50 steps (T5, VAE and transfer are
paid once per job, so the extrapolation scales only the step time, measured from the first call's step intervals).

    python bench/bench_scaleout.py --device cuda --objects 3 --steps 10 --out scaleout_1gpu.json            # 1 GPU
    torchrun --standalone --nproc-per-node 2 bench/bench_scaleout.py --device cuda --objects 3 --steps 10 \\
        --out scaleout_2gpu.json                                                                            # 2 GPUs
    torchrun --standalone --nproc-per-node 2 bench/bench_scaleout.py --device cpu --tiny --out /tmp/so.json  # check

Compare the two JSON files' ``seconds`` (speedup = 1-GPU seconds / N-GPU seconds). Without torchrun the jobs run in
this one process, one at a time (``batch_size=1``, what each rank does).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

# Run from an installed checkout (`pip install -e .`); bench_casper is this script's sibling.
from bench_casper import build_components, write_word_tokenizer
from casper_core import distributed
from casper_core.pipeline import CasperPipeline
from casper_core.trimask import build_trimask_jobs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (each rank takes the GPU of its local rank) or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny widths/depths, 9 frames at 32x48 (CPU check)")
    parser.add_argument("--objects", type=int, default=3, help="objects in the video (jobs = objects + 1)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps per job (default 10; tiny 2)")
    parser.add_argument("--frames", type=int, default=None, help="video frames (default 85; tiny 9)")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True, help="JSON report (never overwritten)")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.tiny else 10)
    args.frames = args.frames or (9 if args.tiny else 85)
    args.height = args.height or (32 if args.tiny else 384)
    args.width = args.width or (48 if args.tiny else 672)
    if args.objects < 1 or args.steps < 1:
        parser.error("--objects and --steps must be positive")
    if args.out.exists():
        parser.error(f"--out {args.out} exists; results are never overwritten")
    return args


def make_video(args) -> tuple[torch.Tensor, object]:
    """A seeded random ``[T,H,W,3]`` video and the trimask jobs of ``--objects`` rectangles moving across it."""
    generator = torch.Generator().manual_seed(0)
    video = torch.rand(args.frames, args.height, args.width, 3, generator=generator)
    masks = torch.zeros(args.objects, args.frames, args.height, args.width)
    box_h, box_w = max(2, args.height // 4), max(2, args.width // (2 * args.objects + 1))
    for i in range(args.objects):
        for t in range(args.frames):
            top = (args.height - box_h) * t // max(1, args.frames - 1)
            left = (2 * i + 1) * box_w
            masks[i, t, top:top + box_h, left:left + box_w] = 1.0
    return video, build_trimask_jobs(video, masks, dilate=3)


class TimedPipeline:
    """The pipeline, recording how long this rank's own call took (its share, without the wait for the others)."""

    def __init__(self, pipeline, device: torch.device):
        self.pipeline, self.device, self.seconds = pipeline, device, None

    def __call__(self, *args, **kwargs):
        begin = time.perf_counter()
        result = self.pipeline(*args, **kwargs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - begin
        return result


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    process = distributed.init_from_environment(args.device)
    device = torch.device(process.device if process else args.device)
    rank, world = (process.rank, process.world_size) if process else (0, 1)
    if process is None and device.type == "cuda":
        torch.cuda.set_device(device.index or 0)  # a bare "cuda" names no index; set_device needs one

    with tempfile.TemporaryDirectory() as scratch:
        write_word_tokenizer(Path(scratch) / "tokenizer")
        components = build_components(device, torch.bfloat16, args.tiny, Path(scratch) / "tokenizer")
    pipe = CasperPipeline(**components)
    video, jobs = make_video(args)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if process:
            dist.barrier()

    # Warm-up: one step of one job on every rank (kernels, cuDNN plans, allocator)
    pipe(video, jobs.select(jobs.names[:1]), steps=1)
    sync()
    step_marks: list[float] = []

    def progress(step, total):
        step_marks.append(time.perf_counter())

    timed = TimedPipeline(pipe, device)
    started = time.perf_counter()
    if process:
        result = distributed.JobParallelPipeline(timed)(video, jobs, steps=args.steps, progress=progress)
    else:
        result = timed(video, jobs, steps=args.steps, batch_size=1, progress=progress)
    sync()
    seconds = time.perf_counter() - started

    intervals = [b - a for a, b in zip(step_marks, step_marks[1:])]
    step_seconds = sorted(intervals)[len(intervals) // 2] if intervals else None
    shares = distributed.assign_jobs(len(jobs), world)
    per_rank = [None] * world
    if process:
        dist.all_gather_object(per_rank, {"compute_s": timed.seconds, "step_s": step_seconds,
                                          "jobs": shares[rank]})
    else:
        per_rank = [{"compute_s": timed.seconds, "step_s": step_seconds, "jobs": shares[0]}]
    distributed.shutdown(synchronise=True)
    if rank != 0:
        return None

    # 50-step figure: the measured time plus (50 − steps) steps of the busiest rank's jobs
    busiest = max(len(share) for share in shares)
    extra_steps = max(0, 50 - args.steps) * busiest
    seconds_50 = seconds + extra_steps * (step_seconds or 0.0)
    report = {
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "tiny": args.tiny, "processes": world, "objects": args.objects,
        "jobs": len(jobs), "frames": args.frames, "height": args.height, "width": args.width, "steps": args.steps,
        "seconds": seconds, "median_step_s": step_seconds, "seconds_at_50_steps": seconds_50,
        "jobs_per_hour_at_50_steps": 3600 * len(jobs) / seconds_50, "per_rank": per_rank,
        "videos_gathered": list(result.videos.shape) if result is not None else None,
    }
    with open(args.out, "x") as handle:  # "x": never overwrite
        json.dump(report, handle, indent=2)
    print(f"\n{'processes':>9} {'jobs':>5} {'steps':>5} {'seconds':>9} {'s/step':>8} {'50 steps s':>11} "
          f"{'jobs/h @50':>11}  per-rank compute s")
    print(f"{world:>9} {len(jobs):>5} {args.steps:>5} {seconds:>9.2f} {step_seconds or float('nan'):>8.3f} "
          f"{seconds_50:>11.1f} {report['jobs_per_hour_at_50_steps']:>11.1f}  "
          + " ".join("-" if r["compute_s"] is None else f"{r['compute_s']:.2f}" for r in per_rank))
    return report


if __name__ == "__main__":
    main()
