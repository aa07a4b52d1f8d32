"""Layer fitting: quality against ground truth, the bootstrapped full-resolution stage, input checks, and the
conditions ComfyUI runs it under (inference mode, interrupts)."""
import math

import pytest
import torch
import torch.nn.functional as F

from omnimatte_core import PRESETS, FitConfig, fit_layers, fit_layers_full_res, minimal_alpha
from omnimatte_core.metrics import layer_quality
from omnimatte_core.presets import resolve_config
from omnimatte_core.synthetic import make_scene


@pytest.fixture(scope="module")
def small_scene():
    return make_scene(seed=0, num_objects=2, frames=6, height=32, width=56)


def test_default_preset_reaches_the_quality_targets_on_ground_truth():
    # The acceptance scene size: ground-truth solos and background, 24 frames at 128x224, default settings.
    # Three objects, one of each effect type (shadow, reflection, dust), fitted in one optimisation.
    scene = make_scene(seed=2, num_objects=3, frames=24, height=128, width=224)
    fit = fit_layers(scene.solos, scene.background, scene.masks, device="cpu")
    assert fit.rgb.shape == (3, 24, 3, 128, 224) and fit.alpha.shape == (3, 24, 1, 128, 224)
    quality = layer_quality(fit.rgb, fit.alpha, scene)
    assert [q["effect_type"] for q in quality] == ["shadow", "reflection", "dust"]
    for q in quality:
        assert q["composite_psnr"] >= 35.0, q
        assert q["alpha_mae"] <= 0.02, q
        assert q["effect_recall"] >= 0.8, q


def test_effects_land_in_their_own_layer_not_in_the_others():
    scene = make_scene(seed=2, num_objects=2, frames=8, height=64, width=112)
    fit = fit_layers(scene.solos, scene.background, scene.masks, preset="preview", device="cpu")
    for i in range(2):
        effect = (scene.effect_alpha[i] > 0.2) & (scene.masks[i] < 0.5) & (scene.layer_alpha[1 - i] < 0.01)
        own = fit.alpha[i][effect].mean()
        other = fit.alpha[1 - i][effect].mean()
        # own: a least-opacity reflection (true alpha > 0.2 here) comes out near 0.13 at this size and step count
        assert own > 0.1 and other < 0.05 and own > 10 * other, (i, float(own), float(other))


def test_minimal_alpha_is_exact_for_a_black_shadow():
    background = torch.rand(2, 3, 8, 8) * 0.8 + 0.1
    shadow_alpha = torch.rand(2, 1, 8, 8) * 0.9
    solo = (1 - shadow_alpha) * background  # a black layer of opacity shadow_alpha
    assert torch.allclose(minimal_alpha(solo, background), shadow_alpha, atol=1e-5)
    assert minimal_alpha(background, background).abs().max() == 0


def test_full_resolution_stage_keeps_the_layers_and_follows_the_base_alpha():
    scene = make_scene(seed=2, num_objects=2, frames=8, height=96, width=168)

    def down(x):
        y = F.interpolate(x.flatten(0, -4), size=(48, 84), mode="area")
        return y.reshape(*x.shape[:-2], 48, 84)

    base = fit_layers(down(scene.solos), down(scene.background), (down(scene.masks) > 0.5).float(), device="cpu")
    full = fit_layers_full_res(scene.solos, scene.background, scene.masks, base, device="cpu")
    assert full.rgb.shape == scene.solos.shape and full.alpha.shape == scene.masks.shape
    for q in layer_quality(full.rgb, full.alpha, scene):
        assert q["composite_psnr"] >= 33.0, q
        assert q["alpha_mae"] <= 0.03, q
        assert q["effect_recall"] >= 0.7, q


def test_the_full_resolution_band_left_unsupervised_is_the_edges_not_a_translucent_effect():
    from omnimatte_core.losses import edge_band
    alpha = torch.zeros(1, 1, 64, 64)
    alpha[..., 8:24, 8:24] = 1.0  # an object: 1 → 0 in one pixel
    ramp = torch.linspace(0.6, 0.3, 24).view(1, 24)  # a soft shadow, 0.3–0.6, fading slowly
    alpha[..., 36:60, 30:54] = ramp
    up = F.interpolate(alpha, scale_factor=2, mode="bilinear", align_corners=False)
    band = edge_band(up, 3, scale=2.0)
    assert band[..., 2 * 8, 2 * 16] == 1 and band[..., 2 * 16, 2 * 8] == 1  # the object's boundary
    assert band[..., 2 * 16, 2 * 16] == 0  # the object's inside
    assert band[..., 2 * 48, 2 * 42] == 0  # the shadow's inside is supervised by the base alpha
    assert band[..., 2 * 36, 2 * 42] == 1  # its boundary (0 → 0.45) is not
    assert band[..., 2 * 30, 2 * 4] == 0  # nor is the empty background


def test_same_seed_gives_identical_layers_and_another_seed_differs(small_scene):
    s = small_scene
    a = fit_layers(s.solos, s.background, s.masks, steps=4, seed=3, device="cpu")
    b = fit_layers(s.solos, s.background, s.masks, steps=4, seed=3, device="cpu")
    c = fit_layers(s.solos, s.background, s.masks, steps=4, seed=4, device="cpu")
    assert torch.equal(a.alpha, b.alpha) and torch.equal(a.rgb, b.rgb)
    assert not torch.equal(a.alpha, c.alpha)


def test_runs_inside_inference_mode_as_comfyui_calls_nodes(small_scene):
    s = small_scene
    with torch.inference_mode():
        solos, background, masks = s.solos.clone(), s.background.clone(), s.masks.clone()  # inference tensors
        fit = fit_layers(solos, background, masks, steps=3, device="cpu")
    assert fit.steps == 3 and torch.isfinite(fit.alpha).all()
    assert fit.history[0]["recon"] != fit.history[-1]["recon"]  # parameters really moved


def test_a_raising_progress_callback_stops_within_one_step(small_scene):
    s = small_scene
    calls = []

    class Interrupted(Exception):
        pass

    def progress(step, total, preview):
        calls.append(step)
        if step == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        fit_layers(s.solos, s.background, s.masks, steps=50, device="cpu", progress=progress)
    assert calls == [1, 2]


def test_progress_reports_every_step_with_previews(small_scene):
    s = small_scene
    seen = []
    fit_layers(s.solos, s.background, s.masks, steps=5, device="cpu", preview_every=2,
               progress=lambda step, total, preview: seen.append((step, total, preview)))
    assert [x[0] for x in seen] == [1, 2, 3, 4, 5] and all(x[1] == 5 for x in seen)
    previews = [x[2] for x in seen if x[2] is not None]
    assert len(previews) == 3  # step indices 0, 2 and 4 (every 2; 4 is also the last)
    assert previews[0].shape == (32, 56, 3) and 0 <= previews[0].min() and previews[0].max() <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_leaves_no_gpu_memory_held(small_scene):
    s = small_scene
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    fit = fit_layers(s.solos, s.background, s.masks, steps=3, device="cuda")
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before
    assert fit.alpha.device.type == "cpu"


# ----------------------------------------------------------------------------------------------------------------
# Bad input: each case a ValueError (or TypeError) that names the argument and says what was expected.


def _inputs(scene):
    return scene.solos.clone(), scene.background.clone(), scene.masks.clone()


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda s, b, m: (s[:, :-1], b, m), "background has 6 frames but solos have 5"),
        (lambda s, b, m: (s, b, m[:, :-1]), "masks have 5 frames"),
        (lambda s, b, m: (s, b[..., :-1], m), "background is"),
        (lambda s, b, m: (s, b, m[..., :-2, :]), "masks are"),
        (lambda s, b, m: (s, b, m[:1]), "masks has 1 objects but solos have 2"),
        (lambda s, b, m: (s[:, :, :2], b, m), r"solos must have shape \[N,T,C,H,W\] with C=3"),
        (lambda s, b, m: (s, b[0], m), r"background must have shape \[T,C,H,W\]"),
        (lambda s, b, m: (s, b, torch.zeros_like(m)), r"masks\[0\] is empty in every frame"),
        (lambda s, b, m: (s, b, torch.cat([m[:1], torch.ones_like(m[1:])])), r"masks\[1\] covers every pixel"),
        (lambda s, b, m: (s.index_fill(0, torch.tensor([1]), float("nan")), b, m), "solos contains NaN or inf"),
        (lambda s, b, m: (s, b.index_fill(0, torch.tensor([0]), float("inf")), m), "background contains NaN or inf"),
        (lambda s, b, m: (s * 255, b, m), r"solos must have values in 0..1"),
        (lambda s, b, m: (s, b - 0.5, m), r"background must have values in 0..1"),
        (lambda s, b, m: (s, b, m * 2), r"masks must have values in 0..1"),
        (lambda s, b, m: (s, (b * 255).to(torch.uint8), m), "background must be a floating-point tensor"),
    ],
)
def test_bad_input_is_a_clear_value_error(small_scene, mutate, match):
    solos, background, masks = mutate(*_inputs(small_scene))
    with pytest.raises(ValueError, match=match):
        fit_layers(solos, background, masks, steps=1, device="cpu")


def test_non_tensor_input_is_a_type_error(small_scene):
    solos, background, masks = _inputs(small_scene)
    with pytest.raises(TypeError, match="solos must be a torch.Tensor"):
        fit_layers(solos.numpy(), background, masks, steps=1, device="cpu")


def test_full_res_refuses_a_base_of_other_objects_or_frames(small_scene):
    s = small_scene
    base = fit_layers(s.solos, s.background, s.masks, steps=1, device="cpu")
    with pytest.raises(ValueError, match="base has 2 layers × 6 frames but solos_hr has 2 × 5"):
        fit_layers_full_res(s.solos[:, :5], s.background[:5], s.masks[:, :5], base, steps=1, device="cpu")
    with pytest.raises(TypeError, match="base must be the FittedLayers"):
        fit_layers_full_res(s.solos, s.background, s.masks, base.alpha, steps=1, device="cpu")


# ----------------------------------------------------------------------------------------------------------------
# Presets and settings


def test_presets_are_named_and_the_paper_preset_holds_the_supplement_settings():
    assert set(PRESETS) == {"paper", "default", "preview"}
    paper = PRESETS["paper"]
    assert (paper.base.steps, paper.base.batch_frames, paper.base.recon) == (20_000, 20, "l2")
    assert (paper.base.sparsity_weight, paper.base.beta_l0, paper.base.beta_l1, paper.base.mask_weight) == (
        1.0, 1.0, 10.0, 20.0)
    full = paper.full_res
    assert (full.steps, full.recon, full.sparsity_weight, full.mask_weight, full.mask_off_step, full.alpha_weight) == (
        20_000, "l1", 10.0, 10.0, 2_000, 20.0)
    assert PRESETS["preview"].base.steps < PRESETS["default"].base.steps < paper.base.steps


def test_settings_resolve_with_overrides_and_reject_unknown_names():
    config = resolve_config("default", "base", steps=7, lr=1e-4)
    assert isinstance(config, FitConfig) and config.steps == 7 and config.lr == 1e-4
    with pytest.raises(ValueError, match="preset must be one of"):
        resolve_config("fast", "base")
    with pytest.raises(TypeError, match="unknown fit setting"):
        resolve_config("default", "base", learning_rate=1.0)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        resolve_config("default", "base", steps=0)
    assert math.isclose(resolve_config(FitConfig(lr=0.5), "base").lr, 0.5)


def test_zero_objects_is_a_clear_value_error(small_scene):
    s = small_scene
    with pytest.raises(ValueError, match=r"solos is empty .*at least one object"):
        fit_layers(s.solos[:0], s.background, s.masks[:0], steps=1, device="cpu")


def test_fit_leaves_the_callers_global_rng_alone(small_scene):
    """ComfyUI seeds the global RNG for other nodes; the fit seeds only its own generators."""
    s = small_scene
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    fit_layers(s.solos, s.background, s.masks, steps=2, seed=7, device="cpu")
    assert torch.equal(torch.rand(4), expected)


def test_fit_hands_over_layers_and_the_full_resolution_stage_takes_them():
    """Fit in, layers out: the base fit becomes the validated Layers the rest of the pipeline takes, and the
    full-resolution stage accepts those Layers as its base (no caller re-wraps them)."""
    from omnimatte_core.layers import Layers
    from omnimatte_core.synthetic import make_scene

    s = make_scene(seed=0, num_objects=2, frames=4, height=32, width=48)
    base = fit_layers(s.solos, s.background, s.masks, steps=2, device="cpu")
    layers = base.to_layers(s.background, names=["a", "b"], fps=12.0)
    assert isinstance(layers, Layers) and layers.names == ["a", "b"] and layers.fps == 12.0
    assert torch.equal(layers.alpha, base.alpha) and torch.equal(layers.rgb, base.rgb)
    from_fit = fit_layers_full_res(s.solos, s.background, s.masks, base, steps=1, device="cpu")
    from_layers = fit_layers_full_res(s.solos, s.background, s.masks, layers, steps=1, device="cpu")
    assert torch.equal(from_fit.alpha, from_layers.alpha)


def test_sparsity_is_lightened_only_where_the_change_is_coloured():
    """A black 40 % shadow needs the same opacity in every channel (the least opacity is its alpha): full sparsity.
    A brown 40 % dust veil needs different opacities per channel (the least opacity is only a bound): the floor.
    Noise at the measured level starts at 0 in every channel: full sparsity."""
    from omnimatte_core.fit import _channel_headroom, _coloured, _sparsity_map, _start_channel_alpha

    g = torch.Generator().manual_seed(0)
    t, band, w = 2, 20, 24
    h = 3 * band
    background = 0.3 + 0.4 * torch.rand(t, 1, 3, h, w, generator=g)
    dust = torch.tensor([0.55, 0.4, 0.25]).view(1, 1, 3, 1, 1)
    solo = background.clone()
    solo[..., :band, :] = 0.6 * background[..., :band, :]  # black shadow, alpha 0.4
    solo[..., band:2 * band, :] = 0.4 * dust + 0.6 * background[..., band:2 * band, :]  # brown dust, alpha 0.4
    sigma = 2 / 255
    solo[..., 2 * band:, :] += sigma * torch.randn(t, 1, 3, band, w, generator=g)  # noise only
    noise = (torch.full((1, 3), sigma), torch.zeros(1, 3))
    config = resolve_config("default", "base")
    channel_alpha = _start_channel_alpha(solo, background, noise, config)
    headroom = _channel_headroom(solo, background)
    for weights_by in (headroom, None):
        weights = _sparsity_map(_coloured(channel_alpha, weights_by), config)
        inner = (slice(None), slice(None), slice(None), slice(8, -8), slice(None))  # beyond the 3 px blur's reach
        shadow, veil, noisy = (weights[..., a:b, :][inner].float() for a, b in ((0, band), (band, 2 * band), (2 * band, h)))
        floor = config.sparsity_on_differences
        assert floor < 1.0
        assert shadow.min() > 0.99, shadow.min()
        # (where the background's own colour lies along the dust's, the tint reads as a darkening: a few pixels)
        assert veil.mean() < floor + 0.05 and (veil <= floor + 1e-3).float().mean() > 0.9, veil
        assert noisy.mean() > 0.97, noisy.mean()
    assert _sparsity_map(torch.zeros(1, 1, 1, 4, 4), resolve_config("default", "base", sparsity_on_differences=1.0)) \
        is None
    # a change the texture reading marked as tinted gets the floor, even with every channel at one start
    tinted = torch.zeros(t, 1, 1, h, w)
    tinted[..., 2 * band:, :] = 1.0
    marked = _sparsity_map(_coloured(channel_alpha, None, tinted), config)
    assert torch.equal(marked[..., :2 * band, :], weights[..., :2 * band, :])
    assert (marked[..., 2 * band:, :].float() - floor).abs().max() < 1e-2


def test_a_shadow_over_a_dark_channel_is_not_read_as_coloured_and_starts_at_its_alpha():
    """The same colour noise is a larger opacity in a dark channel. A black 40 % shadow over ground whose blue is
    0.12, with blocky noise of 1.5/255 in the solo: each channel's least opacity is the alpha plus noise of σ/value, so their
    spread (blue's noise is 4.6 times red's) reads as colour with equal weights, and their largest is biased up.
    Weighed by headroom the shadow is a pure darkening, and its start is the least-squares alpha."""
    from omnimatte_core.fit import _channel_headroom, _coloured, _start_channel_alpha, _start_opacity

    g = torch.Generator().manual_seed(0)
    t, h, w = 4, 48, 64
    ground = torch.tensor([0.55, 0.35, 0.12]).view(1, 1, 3, 1, 1)
    background = ground * (1 + 0.2 * torch.rand(t, 1, 3, h, w, generator=g))
    # a codec's error is correlated over its blocks, so the 3 px average that the colour test takes leaves it whole
    blocks = F.interpolate(torch.randn(t, 3, h // 8, w // 8, generator=g), scale_factor=8, mode="nearest")
    solo = 0.6 * background + 1.5 / 255 * blocks.unsqueeze(1)
    config = resolve_config("default", "base")
    noise = (torch.full((1, 3), 2 / 255), torch.zeros(1, 3))  # the floor: the solo's noise is above it
    channel_alpha = _start_channel_alpha(solo, background, noise, config)
    headroom = _channel_headroom(solo, background)
    weighted, equal = _coloured(channel_alpha, headroom), _coloured(channel_alpha, None)
    # measured: 0.04 weighted, 0.27 with equal weights
    assert weighted.mean() < 0.06 and equal.mean() > 0.2, (weighted.mean(), equal.mean())
    start = _start_opacity(channel_alpha, headroom, weighted)
    largest = _start_opacity(channel_alpha, None, equal)
    assert torch.equal(largest, channel_alpha.amax(dim=-3, keepdim=True))
    # measured: mean start 0.402 weighted, 0.422 as the largest channel's; mean error 0.008 against 0.023
    assert abs(float(start.mean()) - 0.4) < 0.005, start.mean()
    assert float(largest.mean()) - 0.4 > 0.015, largest.mean()
    assert (start - 0.4).abs().mean() < 0.5 * (largest - 0.4).abs().mean()
