"""Job-parallel Casper (`casper_core.distributed`): two gloo processes on the CPU, the tiny release, compared bit for
bit with one process; and the command line under torchrun."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist

from casper_core import decompose, distributed, remove_objects, testing
from casper_core.loading import load_casper_pipeline
from omnimatte_core.synthetic import make_scene

WORKER = Path(__file__).with_name("distributed_worker.py")


def _load_worker_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torchrun(args, cwd, timeout=240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 ARGS`` on the CPU, one thread per process (a free port is chosen
    by --standalone)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_release_for_ranks")
    testing.write_tiny_release(root, seed=0)
    return root


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: the same kernels, the same rounding
    yield
    torch.set_num_threads(threads)


def test_assign_jobs_round_robin():
    assert distributed.assign_jobs(3, 2) == [[0, 2], [1]]
    assert distributed.assign_jobs(4, 8) == [[0], [1], [2], [3], [], [], [], []]
    assert distributed.assign_jobs(5, 1) == [[0, 1, 2, 3, 4]]
    with pytest.raises(ValueError, match="at least one job"):
        distributed.assign_jobs(0, 2)


def test_rank_device_gives_each_rank_its_gpu():
    assert distributed.rank_device("cuda", 3, 4) == "cuda:3"
    assert distributed.rank_device("cpu", 3, 4) == "cpu"
    assert distributed.rank_device("cuda:1", 0, 1) == "cuda:1"  # one process: as given
    with pytest.raises(ValueError, match="pass --device cuda"):
        distributed.rank_device("cuda:1", 0, 2)


def test_one_process_group_equals_the_plain_call_and_refuses_a_shared_generator(tmp_path, release, one_thread):
    worker = _load_worker_module()
    pipe = load_casper_pipeline(release / "CogVideoX-Fun-V1.5-5b-InP", release / "casper_cogvideox_fun_v1.5.safetensors",
                                dtype="fp32", device="cpu")
    video, masks = worker.removal_inputs()
    if dist.is_initialized():
        pytest.skip("a process group from another test is still open; this test makes its own")
    with pytest.raises(RuntimeError, match="no torch.distributed process group"):
        distributed.JobParallelPipeline(pipe)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        assert not distributed.is_active()  # one process: nothing to spread
        parallel = distributed.JobParallelPipeline(pipe)
        with pytest.raises(ValueError, match="generator"):
            remove_objects(parallel, video, masks, generator=torch.Generator(), **worker.SETTINGS)
        with pytest.raises(ValueError, match="dst"):
            distributed.JobParallelPipeline(pipe, dst=1)
        alone = remove_objects(parallel, video, masks, **worker.SETTINGS)
    finally:
        distributed.shutdown()
    plain = remove_objects(pipe, video, masks, batch_size=1, **worker.SETTINGS)
    assert torch.equal(alone.background, plain.background) and torch.equal(alone.solos, plain.solos)


def test_two_ranks_give_the_single_process_videos_bit_for_bit(tmp_path, release, one_thread):
    finished = _torchrun([str(WORKER), str(release), str(tmp_path)], cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    # rank 0 gathered all three jobs; rank 1 ran its share and got nothing back
    assert rank0["removal"] is not None and rank1["removal"] is None
    # each rank's progress counts its own jobs only: 2 steps × 2 jobs on rank 0, × 1 job on rank 1
    assert rank0["steps"][-1] == (4, 4) and rank1["steps"][-1] == (2, 2)

    worker = _load_worker_module()
    pipe = load_casper_pipeline(release / "CogVideoX-Fun-V1.5-5b-InP", release / "casper_cogvideox_fun_v1.5.safetensors",
                                dtype="fp32", device="cpu")
    video, masks = worker.removal_inputs()
    one_by_one = remove_objects(pipe, video, masks, batch_size=1, **worker.SETTINGS)
    gathered = rank0["removal"]
    assert torch.equal(gathered["background"], one_by_one.background)
    assert torch.equal(gathered["solos"], one_by_one.solos)
    assert not torch.equal(gathered["solos"][0], gathered["solos"][1])  # the jobs are not one video repeated
    # the default single process batches the three jobs: the same to the batching tolerance
    batched = remove_objects(pipe, video, masks, **worker.SETTINGS)
    torch.testing.assert_close(gathered["solos"], batched.solos, rtol=0, atol=1e-5)

    # a failure on one rank is raised on both, naming the rank, instead of leaving rank 0 waiting
    for seen in (rank0, rank1):
        assert "rank 1: RuntimeError: CUDA out of memory" in seen["failure"]
        assert "rank 0" not in seen["failure"]
        # settings that differ between ranks are refused before any work
        assert seen["mismatch"].startswith("ValueError") and "ranks [1]" in seen["mismatch"]


def _write_shot(folder: Path, seed: int = 2) -> tuple[Path, list[Path]]:
    scene = make_scene(seed=seed, num_objects=2, frames=5, height=32, width=48, effects=("shadow", "reflection"))
    frames, masks = folder / "video", [folder / "m0", folder / "m1"]
    for path in (frames, *masks):
        path.mkdir(parents=True)
    for t in range(5):
        rgb = (scene.composite[t].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        cv2.imwrite(str(frames / f"{t}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        for i, path in enumerate(masks):
            cv2.imwrite(str(path / f"{t}.png"), (scene.masks[i, t, 0].numpy() * 255).astype(np.uint8))
    return frames, masks


def test_command_line_under_torchrun_equals_one_process(tmp_path, release, one_thread):
    frames, masks = _write_shot(tmp_path / "shot")
    common = ["--video", str(frames), "--masks", *map(str, masks), "--casper-base",
              str(release / "CogVideoX-Fun-V1.5-5b-InP"), "--casper-weights",
              str(release / "casper_cogvideox_fun_v1.5.safetensors"), "--casper-steps", "2", "--casper-size", "32x48",
              "--casper-dtype", "fp32", "--steps", "2", "--formats", "png", "--threads", "1"]
    finished = _torchrun(["-m", "casper_core.decompose", *common, "--out", str(tmp_path / "ranks")], cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("Generative Omnimatte") == 1  # rank 0 alone reports
    assert "its jobs over 2 processes" in finished.stdout
    assert not (tmp_path / "ranks" / "omnimatte_0002").exists()  # one run folder, written by rank 0

    parser = decompose.build_parser()
    args = parser.parse_args([*common, "--casper-batch-size", "1", "--out", str(tmp_path / "one")])
    decompose.check_args(parser, args)
    decompose.run(args, stream=io.StringIO())
    ranks, one = tmp_path / "ranks" / "omnimatte_0001", tmp_path / "one" / "omnimatte_0001"
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (ranks, one)]
    assert summaries[0]["settings"]["removal"]["processes"] == 2 and summaries[1]["settings"]["removal"]["processes"] == 1
    assert summaries[0]["reconstruction_psnr"] == summaries[1]["reconstruction_psnr"]
    pictures = sorted(p.relative_to(one) for p in one.rglob("*.png") if p.name != "demo_layers.png")
    assert len(pictures) == 3 * 5  # the background and two layers, five frames each
    for relative in pictures:
        assert np.array_equal(cv2.imread(str(ranks / relative), cv2.IMREAD_UNCHANGED),
                              cv2.imread(str(one / relative), cv2.IMREAD_UNCHANGED)), relative


def test_weight_free_path_under_torchrun_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    parser = decompose.build_parser()
    with pytest.raises(SystemExit) as exit_info:
        decompose.check_args(parser, parser.parse_args([]))
    assert exit_info.value.code == 2 and "start it with python, not torchrun" in capsys.readouterr().err
