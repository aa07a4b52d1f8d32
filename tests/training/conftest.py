"""Fixtures for the training tests: a tiny release on disk and a tiny training set (CPU, seconds)."""
import pytest

pytest.importorskip("peft")
pytest.importorskip("accelerate")

from casper_core import testing  # noqa: E402
from casper_core.training.config import DataConfig, TrainConfig, TrainingConfig  # noqa: E402
from casper_core.training.storage import append_tuple, create_dataset_root  # noqa: E402
from casper_core.training.synthetic_source import synthetic_tuple  # noqa: E402


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory):
    """A tiny random CogVideoX-Fun-shaped base folder (+ a Casper file), float32."""
    return testing.write_tiny_release(tmp_path_factory.mktemp("training_release"), seed=0)


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory):
    """Two synthetic tuples of 6 frames at 32×48."""
    root = create_dataset_root(tmp_path_factory.mktemp("training_set") / "set")
    for seed in range(2):
        append_tuple(root, synthetic_tuple(seed, frames=6, height=32, width=48))
    return root


def tiny_config(**train) -> TrainingConfig:
    """5-frame 32×32 examples, float32, no workers: a step of the tiny model takes a few hundredths of a second."""
    values = dict(steps=4, batch_size=2, mixed_precision="no", learning_rate=1e-3, warmup_steps=0,
                  optimizer="adamw", checkpoint_every=0, num_workers=0, lora_base_dtype="fp32", lora_rank=4,
                  lora_alpha=4, gradient_checkpointing=False)
    values.update(train)
    return TrainingConfig(data=DataConfig(clip_frames=5, crop_size=(32, 32)), train=TrainConfig(**values))
