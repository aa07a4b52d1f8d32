"""Run by each process of the two-process training test (under torchrun): train the tiny model, then save what this
process's replica holds. Arguments: release folder, training set, output folder."""
import sys

from accelerate import PartialState
from safetensors.torch import save_file

from casper_core.training.components import load_training_components
from casper_core.training.config import DataConfig, TrainConfig, TrainingConfig
from casper_core.training.trainer import train


def main(release_dir: str, set_dir: str, out_dir: str) -> None:
    # the same settings as tests/training/conftest.py's tiny_config(steps=2, batch_size=2)
    config = TrainingConfig(
        data=DataConfig(clip_frames=5, crop_size=(32, 32)),
        train=TrainConfig(steps=2, batch_size=2, mixed_precision="no", learning_rate=1e-3, warmup_steps=0,
                          optimizer="adamw", checkpoint_every=0, num_workers=0, lora_base_dtype="fp32",
                          lora_rank=4, lora_alpha=4, gradient_checkpointing=False))
    components = load_training_components(release_dir)
    train(config, set_dir, out_dir, components=components, progress=False)
    state = PartialState()
    assert state.num_processes == 2, state.num_processes
    replica = {k: v.detach().contiguous() for k, v in components.transformer.state_dict().items()}
    save_file(replica, f"{out_dir}_rank{state.process_index}.safetensors")


if __name__ == "__main__":
    main(*sys.argv[1:4])
