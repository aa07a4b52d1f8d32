"""The Dataset and sampler: clip and crop augmentation, label switching statistics, category mixing."""
import math

import numpy as np
import pytest
import torch

from casper_core.training.augment import random_clip, random_crop_box, switch_keep_labels
from casper_core.training.config import DataConfig, TrainingConfig
from casper_core.training.dataset import MixtureSampler, TupleDataset, group_shares
from casper_core.trimask import KEEP, NEUTRAL, REMOVE


def test_items_have_the_configured_clip_and_crop(tiny_set):
    dataset = TupleDataset(tiny_set, DataConfig(clip_frames=10, crop_size=(32, 32)))
    item = dataset[(0, 7)]
    assert item["input"].shape == (10, 3, 32, 32) and item["target"].shape == (10, 3, 32, 32)
    assert item["trimask"].shape == (10, 1, 32, 32)
    assert set(torch.unique(item["trimask"]).tolist()) <= {KEEP, NEUTRAL, REMOVE}
    for key in ("input", "target"):
        assert 0 <= float(item[key].min()) and float(item[key].max()) <= 1
    again = dataset[(0, 7)]
    assert torch.equal(item["input"], again["input"]) and torch.equal(item["trimask"], again["trimask"])


def test_short_clips_are_padded_by_reflection_and_long_ones_clipped():
    rng = np.random.default_rng(0)
    assert random_clip(4, 10, rng).tolist() == [0, 1, 2, 3, 3, 2, 1, 0, 0, 1]
    clip = random_clip(100, 80, rng)
    assert len(clip) == 80 and torch.equal(clip, torch.arange(int(clip[0]), int(clip[0]) + 80))


def test_small_frames_are_resized_to_cover_the_crop():
    resized, box = random_crop_box((64, 96), (128, 128), np.random.default_rng(0))
    assert resized == (128, 192) and box[2:] == (128, 128) and 0 <= box[1] <= 64 and box[0] == 0
    resized, box = random_crop_box((384, 672), (128, 128), np.random.default_rng(0))
    assert resized == (384, 672)


def test_label_switching_statistics():
    """Each kept object is switched independently with the set probability; remove labels never change."""
    trimask = torch.full((2, 8, 8), NEUTRAL)
    keeps = torch.zeros(3, 2, 8, 8, dtype=torch.bool)
    for i in range(3):
        keeps[i, :, i * 2:i * 2 + 2, :4] = True
        trimask[keeps[i]] = KEEP
    trimask[:, 7, :] = REMOVE
    rng = np.random.default_rng(0)
    probability, draws, switched = 0.3, 2000, 0
    for _ in range(draws):
        out, count = switch_keep_labels(trimask, keeps, probability, rng)
        switched += count
        assert torch.equal(out == REMOVE, trimask == REMOVE)
        assert int((out == KEEP).sum()) == int((trimask == KEEP).sum()) * (3 - count) // 3
    share, sigma = switched / (3 * draws), math.sqrt(probability * (1 - probability) / (3 * draws))
    assert abs(share - probability) < 4 * sigma


def test_switching_applies_to_synthetic_tuples_only(tmp_path):
    from casper_core.training.real_sources import omnimatte_tuples
    from casper_core.training.storage import append_tuple, create_dataset_root
    from casper_core.training.synthetic_source import synthetic_tuple
    from omnimatte_core.layers import Layers
    from omnimatte_core.synthetic import make_scene

    root = create_dataset_root(tmp_path / "set")
    scene = make_scene(0, 2, 5, 32, 32)
    layers = Layers(scene.layer_rgb, scene.layer_alpha, scene.background, scene.order, masks=scene.masks)
    append_tuple(root, omnimatte_tuples(layers)[1])  # keeps object 0
    seed = next(s for s in range(50) if synthetic_tuple(s, frames=5, height=32, width=32).info["kept"])
    append_tuple(root, synthetic_tuple(seed, frames=5, height=32, width=32))
    dataset = TupleDataset(root, DataConfig(clip_frames=5, crop_size=(32, 32), keep_to_neutral=1.0))
    assert all(dataset[(0, s)]["switched"] == 0 for s in range(5))
    assert bool((dataset[(0, 0)]["trimask"] == KEEP).any())
    synthetic = dataset[(1, 0)]
    assert synthetic["switched"] >= 1 and not bool((synthetic["trimask"] == KEEP).any())


def test_mixing_shares_follow_the_config():
    categories = ["omnimatte"] * 3 + ["tripod"] + ["synthetic"] * 10 + ["object_paste"] * 2
    shares = group_shares(categories, DataConfig().mix)
    assert shares == pytest.approx({"omnimatte": 0.375, "tripod": 0.125, "synthetic": 0.48, "object_paste": 0.02})
    sampler = MixtureSampler(categories, DataConfig().mix, seed=1)
    drawn = [categories[sampler.draw(n)[0]] for n in range(20000)]
    for category, share in shares.items():
        assert abs(drawn.count(category) / len(drawn) - share) < 0.015
    # groups without tuples are dropped and the rest renormalised
    assert group_shares(["synthetic", "object_paste"], DataConfig().mix) == pytest.approx(
        {"synthetic": 0.96, "object_paste": 0.04})


def test_process_streams_interleave_into_the_single_process_stream():
    categories = ["synthetic"] * 5 + ["tripod"] * 5
    single = MixtureSampler(categories, {"real": 0.5, "synthetic": 0.5}, seed=3, start=8)
    ranks = [MixtureSampler(categories, {"real": 0.5, "synthetic": 0.5}, seed=3, rank=r, world_size=2, start=8)
             for r in range(2)]
    first = [x for _, x in zip(range(6), iter(single))]
    streams = [iter(r) for r in ranks]
    interleaved = [next(streams[i % 2]) for i in range(6)]
    assert first == interleaved


def test_config_round_trip_and_paper_defaults(tmp_path):
    config = TrainingConfig()
    assert config.data.clip_frames == 80 and config.data.crop_size == (128, 128)
    assert config.data.mix == {"real": 0.5, "synthetic": 0.48, "object_paste": 0.02}
    assert config.train.steps == 20000 and config.train.batch_size == 32 and config.train.mode == "full"
    path = config.save(tmp_path / "config.json")
    assert TrainingConfig.load(path) == config
    with pytest.raises(FileExistsError):
        config.save(path)
    with pytest.raises(ValueError, match="crop_size"):
        TrainingConfig.from_dict({"data": {"crop_size": [100, 128]}})
    with pytest.raises(ValueError, match="unknown key"):
        TrainingConfig.from_dict({"train": {"learning_rat": 1e-4}})
    with pytest.raises(ValueError, match="batch_size"):
        TrainingConfig().train.accumulation_steps(5)
