"""The layer fit on inputs as users have them: solo and background videos that are not exact composites.

Degraded scenes (independent noise, JPEG, colour drift, a sub-pixel background shift), the alignment that maps the
background onto each solo, and the fit's quality measured where reconstruction cannot hide it: false opacity in
empty regions, the alpha of translucent effects, effect recall.
"""
import math

import pytest
import torch

from omnimatte_core.fit import fit_layers
from omnimatte_core.input_alignment import align_background
from omnimatte_core.metrics import cross_talk, false_opacity, layer_quality, masked_alpha_error
from omnimatte_core.synthetic import DEGRADATIONS, Degradation, degrade_scene, make_scene


@pytest.fixture(scope="module")
def scene():
    return make_scene(seed=0, num_objects=2, frames=16, height=96, width=160, effects=["shadow", "reflection"])


def outside(scene, index, width=9):
    from omnimatte_core.clean_plate import dilate_masks
    return ~dilate_masks(scene.masks[index, :, 0] > 0.5, width) & (scene.effect_alpha[index, :, 0] == 0)


def residual_far_from_object(scene, degraded, alignment, index):
    """Mean |solo − background| away from object ``index`` and its effect: before and after the alignment."""
    far = outside(scene, index)
    raw = (degraded.solos[index] - degraded.background).abs().mean(1)[far].mean()
    aligned = (degraded.solos[index] - alignment.background[index]).abs().mean(1)[far].mean()
    return float(raw), float(aligned)


# --------------------------------------------------------------------------------------------------------------------
# Degraded scenes


def test_degrade_scene_keeps_exact_ground_truth(scene):
    degraded = degrade_scene(scene, "combined", seed=3)
    assert degraded.solos.shape == scene.solos.shape and degraded.background.shape == scene.background.shape
    assert torch.equal(degraded.clean_background, scene.background)
    assert torch.equal(degraded.clean_solos, scene.solos)
    assert torch.equal(degraded.true_background, scene.background)
    assert torch.equal(degraded.layer_alpha, scene.layer_alpha)
    assert not torch.equal(degraded.background, scene.background)
    assert 0.0 <= float(degraded.solos.min()) and float(degraded.solos.max()) <= 1.0
    # same seed, same tensors; another seed, other noise
    assert torch.equal(degrade_scene(scene, "combined", seed=3).solos, degraded.solos)
    assert not torch.equal(degrade_scene(scene, "combined", seed=4).solos, degraded.solos)
    with pytest.raises(ValueError, match="already degraded"):
        degrade_scene(degraded, "noise2")
    with pytest.raises(ValueError, match="degradation must be"):
        degrade_scene(scene, "blur")


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_each_degradation_changes_the_inputs_it_should(scene, name):
    degraded = degrade_scene(scene, name, seed=1)
    d = DEGRADATIONS[name]
    bg_change = float((degraded.background - scene.background).abs().mean())
    solo_change = float((degraded.solos - scene.solos).abs().mean())
    if name == "none":
        assert bg_change == 0.0 and solo_change == 0.0
        return
    assert bg_change > 1e-4
    if d.shift_px and not (d.noise_sigma or d.drift or d.jpeg_quality):
        assert solo_change == 0.0  # only the background moves
    else:
        assert solo_change > 1e-4


def test_noise_is_independent_between_videos_and_has_the_asked_level(scene):
    degraded = degrade_scene(scene, "noise4", seed=0)
    noise_bg = (degraded.background - scene.background)
    noise_solo = (degraded.solos[0] - scene.solos[0])
    inner = (scene.background > 0.1) & (scene.background < 0.9)  # away from the clamp at 0 and 1
    assert float(noise_bg[inner].std()) == pytest.approx(4 / 255, rel=0.1)
    corr = torch.corrcoef(torch.stack([noise_bg[inner], noise_solo[inner]]))[0, 1]
    assert abs(float(corr)) < 0.05


# --------------------------------------------------------------------------------------------------------------------
# Alignment


def test_alignment_recovers_the_shift_and_the_noise_level(scene):
    shifted = degrade_scene(scene, Degradation(shift_px=0.5, noise_sigma=2 / 255), seed=0)
    alignment = align_background(shifted.solos, shifted.background, shifted.masks)
    # the background was moved by (+0.5, -0.25): sampling it at x + d undoes that
    mean_shift = alignment.shift.mean(dim=(0, 1))
    assert float(mean_shift[0]) == pytest.approx(0.5, abs=0.05)
    assert float(mean_shift[1]) == pytest.approx(-0.25, abs=0.05)
    # what is left is the noise of both videos: sqrt(2) * 2/255, and the shift no longer adds to it
    assert alignment.noise_sigma.shape == (2, 3)
    assert float(alignment.noise_sigma.mean()) == pytest.approx(math.sqrt(2) * 2 / 255, rel=0.2)
    raw, aligned = residual_far_from_object(scene, shifted, alignment, 0)
    assert float(aligned) < 0.85 * float(raw)


def test_alignment_removes_colour_drift_and_is_the_identity_on_exact_inputs(scene):
    drifted = degrade_scene(scene, "drift", seed=2)
    alignment = align_background(drifted.solos, drifted.background, drifted.masks)
    raw, aligned = residual_far_from_object(scene, drifted, alignment, 0)
    assert float(aligned) < 0.3 * float(raw)

    exact = align_background(scene.solos, scene.background, scene.masks)
    assert float(exact.shift.abs().max()) < 0.02
    assert float((exact.gain - 1).abs().max()) < 0.01
    assert float((exact.background - scene.background).abs().mean()) < 1e-3


# --------------------------------------------------------------------------------------------------------------------
# Metrics that reconstruction cannot satisfy


def test_false_opacity_counts_only_pixels_far_from_the_true_layer():
    true = torch.zeros(1, 1, 20, 20)
    true[..., 8:12, 8:12] = 0.5
    pred = true.clone()
    pred[..., 0, :] = 0.2  # a veil along the top row: 20 pixels, all far from the layer
    pred[..., 7, 8] = 0.9  # next to the layer: inside the margin, not counted
    share, mean = false_opacity(pred, true, margin=3)
    empty = 400 - 10 * 10  # the 4x4 layer grown by 3 px on each side
    assert share == pytest.approx(20 / empty)
    assert mean == pytest.approx(20 * 0.2 / empty)
    assert masked_alpha_error(pred, true, true > 0) == 0.0


def test_cross_talk_measures_another_objects_effect_in_a_layer(scene):
    alpha = scene.layer_alpha.clone()
    other_effect = (scene.effect_alpha[1] > 0.1) & (scene.layer_alpha[0] == 0)
    alpha[0][other_effect] = 0.6  # layer 0 copies object 1's reflection
    leaks = cross_talk(alpha, scene)
    assert leaks[0] == pytest.approx(0.6)
    assert leaks[1] < 1e-6


# --------------------------------------------------------------------------------------------------------------------
# The fit on degraded inputs


def test_the_old_objective_turns_noise_into_opacity(scene):
    """The metric catches what composite PSNR hides: with alignment, noise handling and the local colour model
    switched off, a veil covers most of the empty frame."""
    degraded = degrade_scene(scene, "noise4", seed=1)
    fit = fit_layers(degraded.solos, degraded.background, degraded.masks, steps=20, device="cpu",
                     align_inputs=False, noise_threshold=0, noise_tolerance=0, colour_smoothing=0)
    quality = layer_quality(fit.rgb, fit.alpha, degraded)
    assert min(q["false_opacity"] for q in quality) > 0.3


@pytest.mark.parametrize("name", ["noise4", "combined"])
def test_default_fit_holds_on_degraded_inputs(scene, name):
    degraded = degrade_scene(scene, name, seed=1)
    # Three fit seeds: under the combined degradations the false opacity of one fit moves by about a point with the
    # smallest numerical change (thread count, one noise floor or another); measured 0.6-1.6 %, once 2.7 %.
    runs = [layer_quality(*_fitted(degraded, seed), degraded) for seed in (0, 1, 2)]
    for layer in range(2):
        false_opacity = [run[layer]["false_opacity"] for run in runs]
        assert sum(false_opacity) / 3 <= 0.02 and max(false_opacity) <= 0.03, false_opacity
    for shadow, reflection in runs:
        for q in (shadow, reflection):
            assert q["mean_false_alpha"] <= 0.01, q
            assert q["composite_psnr"] >= 35.0, q
            assert q["alpha_mae_object"] <= 0.05, q
        # a black shadow of alpha ~0.5 gets its alpha, not the least or the greatest opacity
        assert shadow["effect_alpha_error"] <= 0.1, shadow
        assert shadow["effect_recall"] >= 0.8, shadow
        # a coloured translucent reflection over weak texture is found (see BENCHMARKS.md)
        assert reflection["effect_recall"] >= 0.6, reflection
        assert reflection["effect_alpha_error"] <= 0.3, reflection


def _fitted(degraded, seed):
    fit = fit_layers(degraded.solos, degraded.background, degraded.masks, device="cpu", seed=seed)
    return fit.rgb, fit.alpha


def test_colour_only_alignment_keeps_zero_shift_and_removes_drift(scene):
    drifted = degrade_scene(scene, "drift", seed=2)
    alignment = align_background(drifted.solos, drifted.background, drifted.masks, estimate_shift=False)
    assert float(alignment.shift.abs().max()) == 0.0
    raw, aligned = residual_far_from_object(scene, drifted, alignment, 1)
    assert float(aligned) < 0.3 * float(raw)


def test_noise_model_puts_misalignment_on_edges_not_on_flat_ground(scene):
    shifted = degrade_scene(scene, "shift", seed=0)
    alignment = align_background(shifted.solos, shifted.background, shifted.masks)
    exact = align_background(scene.solos, scene.background, scene.masks)
    # no noise was added: flat ground stays at the floor, the residual of the resampled shift lives on edges
    assert float(alignment.noise_sigma.max()) < 1 / 255
    assert float(alignment.edge_noise.min()) > 0.05
    assert float(exact.edge_noise.max()) < 0.02


def test_coloured_translucent_effects_get_their_alpha_not_the_least_opacity():
    """A reflection (the mirrored object's colours) and a brown dust trail of alpha up to 0.45 / 0.4: the least
    opacity that explains them underestimates their alpha by 0.14-0.19 on average. The objective (effect colour
    constant over a wide neighbourhood, coarse reconstruction, sparsity lightened where the change is coloured) gets
    closer than uniform sparsity on the reflection, and keeps the black shadow at its alpha; the dust gets its alpha
    from the texture start with either sparsity. The motion reading, set after the fit, takes the reflection further."""
    scene = make_scene(seed=0, num_objects=3, frames=16, height=96, width=160,
                       effects=["shadow", "reflection", "dust"])
    errors = {}
    # The two comparisons without the motion reading run at the exact inputs' noise floor: the default floor's dead
    # zone (2/255) hides part of the texture that sparsity is compared on (no_motion reflection 0.176 with it).
    exact = {"motion_reading": False, "noise_floor": 1 / 1024}
    for name, overrides in (("default", {}), ("no_motion", exact),
                            ("uniform_sparsity", {**exact, "sparsity_on_differences": 1.0})):
        fit = fit_layers(scene.solos, scene.background, scene.masks, device="cpu", **overrides)
        errors[name] = {q["effect_type"]: q["effect_alpha_error"] for q in layer_quality(fit.rgb, fit.alpha, scene)}
    # measured on the CPU: default 0.016 / 0.068 / 0.032; without the motion reading 0.012 / 0.125 / 0.021, and with
    # uniform sparsity too 0.012 / 0.154 / 0.031 (before the texture start the dust was 0.064 and 0.111)
    assert errors["default"]["shadow"] <= 0.03, errors
    assert errors["default"]["reflection"] <= 0.08, errors
    assert errors["default"]["dust"] <= 0.05, errors
    assert errors["no_motion"]["reflection"] <= 0.14, errors
    assert errors["uniform_sparsity"]["reflection"] > errors["no_motion"]["reflection"] + 0.015, errors


def test_tinted_dust_under_noise_starts_from_the_texture_reading():
    """Dust close to the ground's colour (seed 1): its least opacity averages 0.06 against a true 0.24, and under
    noise of 4/255 the fit stayed near it (recall 0.51). Started from the background texture's reading
    (``texture_alpha``) it gets its alpha."""
    scene = make_scene(seed=1, num_objects=3, frames=16, height=96, width=160, effects=["shadow", "reflection", "dust"])
    degraded = degrade_scene(scene, "noise4", seed=2)
    dust = degraded.effect_types.index("dust")
    results = {}
    for name, overrides in (("default", {}), ("no_texture_start", {"texture_pool": 0})):
        fit = fit_layers(degraded.solos[dust:dust + 1], degraded.background, degraded.masks[dust:dust + 1],
                         device="cpu", **overrides)
        results[name] = layer_quality(fit.rgb, fit.alpha, _one_object(degraded, dust))[0]
    # measured on the CPU: recall 0.815, alpha error 0.084; without the texture start 0.487 and 0.144
    assert results["default"]["effect_recall"] >= 0.75, results
    assert results["default"]["effect_alpha_error"] <= 0.11, results
    assert results["default"]["false_opacity"] <= 0.02, results
    assert results["no_texture_start"]["effect_recall"] < 0.65, results



def test_dust_lifted_by_its_texture_keeps_its_alpha_under_the_combined_degradations(monkeypatch):
    """Where the texture lifts the start, the layer is tinted and sparsity is lightened there as for any coloured
    change. With full sparsity the combined degradations' dead zone let it pull the lifted dust back down: recall
    0.71, alpha error 0.10 (seed-1 dust alone, ``combined4``); lightened: 0.82 and 0.065 (measured on the CPU)."""
    from omnimatte_core import fit as fit_module

    scene = make_scene(seed=1, num_objects=3, frames=16, height=96, width=160, effects=["shadow", "reflection", "dust"])
    degraded = degrade_scene(scene, "combined4", seed=2)
    dust = degraded.effect_types.index("dust")

    def quality():
        fit = fit_layers(degraded.solos[dust:dust + 1], degraded.background, degraded.masks[dust:dust + 1],
                         device="cpu")
        return layer_quality(fit.rgb, fit.alpha, _one_object(degraded, dust))[0]

    lightened = quality()
    assert lightened["effect_recall"] >= 0.78, lightened
    assert lightened["effect_alpha_error"] <= 0.085, lightened
    assert lightened["false_opacity"] <= 0.02 and lightened["mean_false_alpha"] <= 0.01, lightened
    by_colour_alone = fit_module._coloured
    monkeypatch.setattr(fit_module, "_coloured", lambda channel_alpha, headroom, tinted=None:
                        by_colour_alone(channel_alpha, headroom))
    unlightened = quality()
    assert unlightened["effect_recall"] < lightened["effect_recall"] - 0.05, (unlightened, lightened)

def test_a_moving_reflection_gets_its_alpha_from_the_background_moving_under_it():
    """A reflection's colour is the mirrored object's texture, so the fit's locally constant effect colour leaves its
    alpha following that texture down (seed-1 reflection alone under noise of 4/255: error 0.140, recall 0.76 without
    the motion reading). Read from the background's change under the moving layer and set after the fit: 0.094 and
    0.86 (measured on the CPU), with no false opacity."""
    scene = make_scene(seed=1, num_objects=3, frames=16, height=96, width=160, effects=["shadow", "reflection", "dust"])
    degraded = degrade_scene(scene, "noise4", seed=2)
    reflection = degraded.effect_types.index("reflection")
    results = {}
    for name, overrides in (("default", {}), ("no_motion_reading", {"motion_reading": False})):
        fit = fit_layers(degraded.solos[reflection:reflection + 1], degraded.background,
                         degraded.masks[reflection:reflection + 1], device="cpu", **overrides)
        results[name] = layer_quality(fit.rgb, fit.alpha, _one_object(degraded, reflection))[0]
    assert results["default"]["effect_alpha_error"] <= 0.105, results
    assert results["default"]["effect_recall"] >= 0.82, results
    assert results["default"]["false_opacity"] <= 0.005 and results["default"]["composite_psnr"] >= 40.0, results
    assert results["no_motion_reading"]["effect_alpha_error"] > results["default"]["effect_alpha_error"] + 0.03, results


def _one_object(scene, index):
    """The scene seen as if object ``index`` were its only object (to score a fit of that object alone)."""
    import dataclasses
    per_object = ("solos", "layer_rgb", "layer_alpha", "object_alpha", "masks", "effect_alpha", "clean_solos")
    sliced = {name: getattr(scene, name)[index:index + 1] for name in per_object if getattr(scene, name) is not None}
    return dataclasses.replace(scene, effect_types=scene.effect_types[index:index + 1], **sliced)
