"""Metrics: known values on constructed inputs, and the ground truth scoring as perfect."""
import math

import pytest
import torch

from omnimatte_core.metrics import alpha_mae, effect_recall, layer_quality, object_recall, psnr
from omnimatte_core.synthetic import make_scene


@pytest.fixture(scope="module")
def scene():
    return make_scene(seed=1, num_objects=3, frames=6, height=48, width=80)


def test_psnr_identical_is_inf_and_known_value():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert psnr(x, x.clone()) == math.inf
    # a constant error of 0.1 gives MSE 0.01, i.e. exactly 20 dB
    pred, target = torch.full((4, 4), 0.6, dtype=torch.float64), torch.full((4, 4), 0.5, dtype=torch.float64)
    assert psnr(pred, target) == pytest.approx(20.0, abs=1e-9)
    # a quarter of the pixels off by 1: MSE 0.25 -> 6.0206 dB
    pred = torch.zeros(4, 4)
    pred[:2, :2] = 1
    assert psnr(pred, torch.zeros(4, 4)) == pytest.approx(10 * math.log10(4), abs=1e-9)


def test_alpha_mae_known_value():
    gt = torch.zeros(1, 1, 4, 4)
    pred = gt.clone()
    pred[..., 0, :] = 0.5  # 4 of 16 pixels off by 0.5
    assert alpha_mae(pred, gt) == pytest.approx(0.125)
    assert alpha_mae(gt, gt) == 0.0


def test_effect_recall_counts_effect_pixels_outside_the_object():
    effect = torch.zeros(1, 1, 4, 4)
    effect[..., :, 2:] = 0.4  # 8 effect pixels in columns 2..3
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :, 3] = 1  # column 3 is the object: its pixels do not count
    assert effect_recall(effect, effect, mask) == 1.0
    assert effect_recall(torch.zeros_like(effect), effect, mask) == 0.0
    pred = torch.zeros_like(effect)
    pred[..., :2, 2] = 0.06  # covers 2 of the 4 counted pixels (above cover_thresh 0.05)
    pred[..., 2:, 2] = 0.04  # below the cover threshold
    assert effect_recall(pred, effect, mask) == pytest.approx(0.5)
    # no effect pixel at all: nothing to recall
    assert math.isnan(effect_recall(pred, torch.zeros_like(effect), mask))


def test_object_recall():
    mask = torch.zeros(2, 2)
    mask[0] = 1
    assert object_recall(mask, mask) == 1.0
    assert object_recall(mask * 0.4, mask) == 0.0
    assert math.isnan(object_recall(mask, torch.zeros(2, 2)))


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="pred"):
        psnr(torch.zeros(2, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="object_mask"):
        effect_recall(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(1, 2))


def test_layer_quality_of_ground_truth_is_perfect(scene):
    results = layer_quality(scene.layer_rgb, scene.layer_alpha, scene)
    assert [r["effect_type"] for r in results] == ["shadow", "reflection", "dust"]
    for r in results:
        assert r["composite_psnr"] > 100 or r["composite_psnr"] == math.inf
        assert r["alpha_mae"] == 0.0
        assert r["effect_recall"] == 1.0
        assert r["object_recall"] == 1.0


def test_layer_quality_of_object_only_layers_misses_effects(scene):
    # a mask-only method: the object without its effect
    results = layer_quality(scene.layer_rgb, scene.object_alpha, scene)
    for i, r in enumerate(results):
        assert r["effect_recall"] < 0.15  # only the object's antialiased rim reaches into the effect
        assert r["object_recall"] == 1.0
        assert r["alpha_mae"] == pytest.approx((scene.layer_alpha[i] - scene.object_alpha[i]).abs().mean().item())
        assert r["composite_psnr"] < 40


def test_layer_quality_checks_shapes(scene):
    with pytest.raises(ValueError, match="alpha"):
        layer_quality(scene.layer_rgb, scene.layer_alpha[:, :, :, :-1], scene)
    with pytest.raises(ValueError, match="rgb"):
        layer_quality(scene.layer_rgb[:1], scene.layer_alpha, scene)
