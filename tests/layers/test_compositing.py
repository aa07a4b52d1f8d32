"""Over-compositing, composited opacity and detail transfer against ground truth."""
import pytest
import torch
import torch.nn.functional as F

from omnimatte_core.compositing import composite, composited_opacity, detail_transfer, reconstruct
from omnimatte_core.layers import Layers
from omnimatte_core.synthetic import composite_layers


def _random_layers(seed=0, n=3, t=5, h=12, w=10):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(n, t, 3, h, w, generator=g)
    alpha = torch.rand(n, t, 1, h, w, generator=g)
    alpha[alpha > 0.7] = 1.0  # some exactly opaque pixels, as fitted layers have
    background = torch.rand(t, 3, h, w, generator=g)
    order = torch.stack([torch.randperm(n, generator=g) for _ in range(t)])
    return rgb, alpha, background, order


def test_ground_truth_layers_reproduce_the_scene(scene, gt_layers):
    assert (reconstruct(gt_layers) - scene.composite).abs().max() < 1e-5


def test_composite_equals_sequential_over_with_per_frame_orders():
    rgb, alpha, background, order = _random_layers()
    expected = composite_layers(rgb, alpha, background, order)  # the plain back-to-front loop
    assert torch.allclose(composite(rgb, alpha, background, order), expected, atol=1e-6)
    # and the order matters: a different order gives a different picture
    assert not torch.allclose(composite(rgb, alpha, background, order.flip(1)), expected, atol=1e-3)


def test_composited_opacity_and_transmission_sum_to_one():
    _, alpha, _, order = _random_layers(seed=1)
    opacity, transmission = composited_opacity(alpha, order)
    assert torch.allclose(opacity.sum(dim=0) + transmission, torch.ones_like(transmission), atol=1e-6)
    frames = torch.arange(alpha.shape[1])
    front = order[:, 0]
    assert torch.equal(opacity[front, frames], alpha[front, frames])  # nothing in front of the nearest layer
    assert torch.allclose(transmission, (1 - alpha).prod(dim=0), atol=1e-6)
    back, middle = order[:, -1], order[:, 1]
    expected_back = alpha[back, frames] * (1 - alpha[front, frames]) * (1 - alpha[middle, frames])
    assert torch.allclose(opacity[back, frames], expected_back, atol=1e-6)


def _degraded(layers: Layers) -> Layers:
    """What an upsampled fit looks like: blurred colour, a noisy background."""
    g = torch.Generator().manual_seed(3)
    n, t, _, h, w = layers.rgb.shape
    blurred = F.avg_pool2d(layers.rgb.reshape(n * t, 3, h, w), 5, 1, 2, count_include_pad=False).reshape_as(layers.rgb)
    noisy = (layers.background + 0.05 * torch.randn(layers.background.shape, generator=g)).clamp(0, 1)
    return layers.replace(rgb=blurred, background=noisy)


def test_detail_transfer_restores_the_input_inside_opaque_regions(scene, gt_layers):
    degraded = _degraded(gt_layers)
    before = [degraded.rgb.clone(), degraded.alpha.clone(), degraded.background.clone()]
    assert (reconstruct(degraded) - scene.composite).abs().max() > 0.1  # the degradation is visible
    result = detail_transfer(degraded, scene.composite, threshold=0.98)

    opacity, transmission = composited_opacity(degraded.alpha, degraded.order)
    assert torch.equal(result.layer_regions, opacity >= 0.98)
    assert torch.equal(result.background_region, transmission >= 0.98)
    assert result.layer_regions.any() and result.background_region.any()
    owned = result.layer_regions.any(dim=0) | result.background_region  # [T,1,H,W]
    error = (reconstruct(result.layers) - scene.composite).abs()
    assert error[owned.expand_as(error)].max() < 1e-5  # exact where one layer owns the pixel
    # transparent regions (soft shadow, reflection, dust, edges) are left exactly as they were
    assert owned.float().mean() < 1 and (~owned).any()
    keep_rgb = ~result.layer_regions.expand_as(degraded.rgb)
    assert torch.equal(result.layers.rgb[keep_rgb], degraded.rgb[keep_rgb])
    keep_bg = ~result.background_region.expand_as(degraded.background)
    assert torch.equal(result.layers.background[keep_bg], degraded.background[keep_bg])
    assert torch.equal(result.layers.alpha, degraded.alpha)
    # nothing was modified in place
    for old, new in zip(before, [degraded.rgb, degraded.alpha, degraded.background]):
        assert torch.equal(old, new)
    assert 0 < result.fraction < 1


def test_threshold_one_copies_input_pixels_where_opacity_is_one(scene, gt_layers):
    degraded = _degraded(gt_layers)
    result = detail_transfer(degraded, scene.composite, threshold=1.0)
    opacity, _ = composited_opacity(degraded.alpha, degraded.order)
    for i in range(degraded.num_layers):
        full = (opacity[i] == 1).expand(-1, 3, -1, -1)
        assert full.any()
        assert torch.allclose(result.layers.rgb[i][full], scene.composite[full], atol=1e-6)  # the paper's copy


def test_opaque_inside_masks_fills_holes_of_a_solid_object(scene, gt_layers):
    holed_alpha = gt_layers.alpha.clone()
    holed_alpha[0] = torch.where(scene.masks[0] > 0, 0.6 * holed_alpha[0], holed_alpha[0])  # a fit with a hole
    holed = _degraded(gt_layers).replace(alpha=holed_alpha)
    plain = detail_transfer(holed, scene.composite)
    solid = detail_transfer(holed, scene.composite, opaque_inside_masks=True)
    assert solid.layer_regions[0].sum() > plain.layer_regions[0].sum()
    assert bool((solid.layers.alpha[0] >= scene.masks[0]).all())
    # inside object 0's mask where nothing is in front, the composite is the input again
    opacity, _ = composited_opacity(solid.layers.alpha, solid.layers.order)
    visible = (scene.masks[0] > 0) & (opacity[0] >= 0.98)
    error = (reconstruct(solid.layers) - scene.composite).abs()
    assert visible.any() and error[visible.expand_as(error)].max() < 1e-5
    with pytest.raises(ValueError, match="masks"):
        detail_transfer(holed.replace(masks=None), scene.composite, opaque_inside_masks=True)


def test_bad_inputs_name_the_argument(scene, gt_layers):
    rgb, alpha, background, order = _random_layers()
    with pytest.raises(ValueError, match="alpha"):
        composite(rgb, alpha[:2], background, order)
    with pytest.raises(ValueError, match="background"):
        composite(rgb, alpha, background[:, :, :5], order)
    with pytest.raises(ValueError, match="order"):
        composite(rgb, alpha, background, order[:, :2])
    with pytest.raises(ValueError, match="not a permutation"):
        composite(rgb, alpha, background, torch.zeros_like(order))
    with pytest.raises(ValueError, match="video"):
        detail_transfer(gt_layers, scene.composite[:, :, :-1])
    with pytest.raises(ValueError, match="threshold"):
        detail_transfer(gt_layers, scene.composite, threshold=0.4)
    with pytest.raises(TypeError, match="layers"):
        detail_transfer(scene, scene.composite)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_the_gpu_with_the_same_result(scene, gt_layers):
    degraded = _degraded(gt_layers)
    cpu = detail_transfer(degraded, scene.composite)
    gpu = detail_transfer(degraded.to("cuda"), scene.composite.cuda())
    assert gpu.layers.rgb.is_cuda
    assert torch.allclose(gpu.layers.rgb.cpu(), cpu.layers.rgb, atol=1e-5)
