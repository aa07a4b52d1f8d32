"""Two processes through accelerate (gloo on the CPU): DDP keeps the replicas identical and checkpoints once.

The processes are fresh interpreters started by torchrun (accelerate reads its environment): processes forked from a
pytest that has already run torch's thread pools can hang in it."""
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("distributed_train_worker.py")


def test_two_process_gloo_run(tiny_release, tiny_set, tmp_path):
    out = tmp_path / "run"
    # ACCELERATE_USE_CPU: accelerate takes torchrun's environment as a CPU process group only when told to use the CPU
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", ACCELERATE_USE_CPU="true")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(WORKER),
               str(tiny_release.base_dir), str(tiny_set), str(out)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    first, second = (load_file(str(tmp_path / f"run_rank{r}.safetensors")) for r in range(2))
    assert all(torch.equal(first[k], second[k]) for k in first)  # gradients were averaged, replicas agree
    base = load_file(str(tiny_release.base_dir / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(first[k], base[k]) for k in first)  # and they did train
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000002"]
    exported = load_file(str(out / "casper_transformer.safetensors"))
    assert all(torch.equal(exported[k], first[k].to(torch.bfloat16)) for k in first)
    assert len((out / "losses.jsonl").read_text().splitlines()) == 2
