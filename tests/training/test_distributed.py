"""Two processes through accelerate (gloo on the CPU): DDP keeps the replicas identical and checkpoints once."""
import torch
from safetensors.torch import load_file

from .conftest import tiny_config


def _train_in_process(release_dir, set_dir, out_dir):
    """Run by each of the launched processes: train, then save what this process's replica holds."""
    from accelerate import PartialState
    from accelerate.state import AcceleratorState
    from safetensors.torch import save_file

    # The processes are forked from pytest: drop the single-process state earlier tests left in accelerate's
    # singletons, so this process joins the 2-process group the launcher set up.
    AcceleratorState._reset_state(reset_partial_state=True)

    from casper_core.training.components import load_training_components
    from casper_core.training.trainer import train

    components = load_training_components(release_dir)
    train(tiny_config(steps=2, batch_size=2), set_dir, out_dir, components=components, progress=False)
    state = PartialState()
    assert state.num_processes == 2
    replica = {k: v.detach().contiguous() for k, v in components.transformer.state_dict().items()}
    save_file(replica, f"{out_dir}_rank{state.process_index}.safetensors")


def test_two_process_gloo_run(tiny_release, tiny_set, tmp_path):
    from accelerate import debug_launcher

    out = tmp_path / "run"
    debug_launcher(_train_in_process, args=(str(tiny_release.base_dir), str(tiny_set), str(out)), num_processes=2)
    first, second = (load_file(str(tmp_path / f"run_rank{r}.safetensors")) for r in range(2))
    assert all(torch.equal(first[k], second[k]) for k in first)  # gradients were averaged, replicas agree
    base = load_file(str(tiny_release.base_dir / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(first[k], base[k]) for k in first)  # and they did train
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000002"]
    exported = load_file(str(out / "casper_transformer.safetensors"))
    assert all(torch.equal(exported[k], first[k].to(torch.bfloat16)) for k in first)
    assert len((out / "losses.jsonl").read_text().splitlines()) == 2
