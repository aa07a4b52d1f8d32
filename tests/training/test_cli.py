"""The entry points: data synthesis and training write into new folders and refuse existing ones."""
import json

import cv2
import numpy as np
import pytest

from casper_core.training import synthesize
from casper_core.training import train as train_cli
from casper_core.training.config import TrainingConfig
from casper_core.training.storage import read_manifest, read_tuple


def write_tripod_clip(folder, frames=6, height=32, width=48):
    """A locked-off clip: a plate, a square moving over it, its mask (PNG frame folders)."""
    rng = np.random.default_rng(0)
    plate = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    (folder / "video").mkdir(parents=True)
    (folder / "masks" / "square").mkdir(parents=True)
    for t in range(frames):
        frame, mask = plate.copy(), np.zeros((height, width), np.uint8)
        frame[8:20, 4 + 3 * t:16 + 3 * t] = 250
        mask[8:20, 4 + 3 * t:16 + 3 * t] = 255
        cv2.imwrite(str(folder / "video" / f"{t:05d}.png"), frame[..., ::-1])
        cv2.imwrite(str(folder / "masks" / "square" / f"{t:05d}.png"), mask)
    cv2.imwrite(str(folder / "plate.png"), plate[..., ::-1])
    return plate


def test_synthesize_writes_every_source(tmp_path):
    plate = write_tripod_clip(tmp_path / "clip")
    out = tmp_path / "set"
    code = synthesize.main([str(out), "--synthetic", "2", "--object-paste", "2", "--tripod", str(tmp_path / "clip"),
                            "--frames", "6", "--height", "32", "--width", "48", "--short-side", "0"])
    assert code == 0
    categories = [entry["category"] for entry in read_manifest(out)]
    assert sorted(categories) == ["object_paste", "object_paste", "synthetic", "synthetic", "tripod"]
    tripod = read_tuple(out / read_manifest(out)[categories.index("tripod")]["folder"])
    assert np.abs(tripod.target_video[0].numpy() * 255 - plate).max() <= 0.5
    with pytest.raises(SystemExit):
        synthesize.main([str(out), "--synthetic", "1"])  # never overwrites


def test_train_cli_writes_the_default_config_and_refuses_overwriting(tmp_path, capsys):
    path = tmp_path / "config.json"
    assert train_cli.main(["--write-config", str(path)]) == 0
    assert TrainingConfig.load(path) == TrainingConfig()
    assert json.loads(path.read_text())["train"]["steps"] == 20000
    with pytest.raises(FileExistsError):
        train_cli.main(["--write-config", str(path)])


def test_train_cli_runs_a_config(tiny_release, tiny_set, tmp_path):
    from .conftest import tiny_config

    config_path = tiny_config(steps=2).save(tmp_path / "tiny.json")
    out = tmp_path / "run"
    assert train_cli.main([str(tiny_set), str(out), "--base-dir", str(tiny_release.base_dir),
                           "--config", str(config_path), "--mode", "lora"]) == 0
    assert (out / "casper_transformer.safetensors").is_file() and (out / "lora" / "adapter_config.json").is_file()
    assert json.loads((out / "config.json").read_text())["train"]["mode"] == "lora"
