"""One rank of the job-parallel test, started by torchrun: ``distributed_worker.py <release root> <out dir>``.

Runs the tiny release's pipeline through `JobParallelPipeline` (gloo, CPU) on the video of `removal_inputs`, then
a call whose jobs fail on rank 1 only and a call whose settings differ on rank 1; saves what this rank saw to
``<out dir>/rank<r>.pt`` for the test to compare with one process.
"""
import sys
from pathlib import Path

import torch

from casper_core import distributed, remove_objects
from casper_core.loading import load_casper_pipeline
from casper_core.release_format import BASE_MODEL_NAME, CASPER_WEIGHTS_NAME

SETTINGS = dict(size=(16, 32), steps=2, dilate=3, seed=5)


def removal_inputs():
    """``video [5,3,16,32]`` and masks of two objects ``[2,5,1,16,32]`` (three jobs: more than the two ranks)."""
    video = torch.rand(5, 3, 16, 32, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(2, 5, 1, 16, 32)
    for i in range(2):
        masks[i, :, :, 2:8, 3 + 12 * i:9 + 12 * i] = 1.0
    return video, masks


class FailingPipeline:
    """A pipeline whose every call fails, as a rank out of memory would."""

    def __call__(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory (raised by the test)")


def _error_of(call) -> str | None:
    try:
        call()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def main(root: str, out: str) -> None:
    torch.set_num_threads(1)
    process = distributed.init_from_environment("cpu")
    assert process is not None and process.world_size == 2, process
    pipe = load_casper_pipeline(Path(root) / BASE_MODEL_NAME, Path(root) / CASPER_WEIGHTS_NAME, dtype="fp32",
                                device="cpu")
    video, masks = removal_inputs()
    parallel = distributed.JobParallelPipeline(pipe)
    steps_seen = []
    removal = remove_objects(parallel, video, masks, progress=lambda step, total: steps_seen.append((step, total)),
                             **SETTINGS)
    failing = distributed.JobParallelPipeline(FailingPipeline() if process.rank == 1 else pipe)
    failure = _error_of(lambda: remove_objects(failing, video, masks, **SETTINGS))
    other_steps = dict(SETTINGS, steps=SETTINGS["steps"] + process.rank)
    mismatch = _error_of(lambda: remove_objects(parallel, video, masks, **other_steps))
    torch.save({"rank": process.rank, "removal": None if removal is None else vars(removal), "steps": steps_seen,
                "failure": failure, "mismatch": mismatch}, Path(out) / f"rank{process.rank}.pt")
    distributed.shutdown(synchronise=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
