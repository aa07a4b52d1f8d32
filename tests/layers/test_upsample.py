"""Upsampling removal outputs and the bootstrapped full-resolution fit (omnimatte_core.upsample)."""
import pytest
import torch
import torch.nn.functional as F

from omnimatte_core import fit
from omnimatte_core.metrics import psnr
from omnimatte_core.synthetic import make_scene
from omnimatte_core.upsample import (RESAMPLERS, resize_video, solos_with_input_detail, upscale_and_refine,
                                     upscale_removal_outputs)


@pytest.fixture(scope="module")
def scene():
    return make_scene(seed=1, num_objects=2, frames=6, height=64, width=112, effects=["shadow", "reflection"])


def _down(x):
    return F.interpolate(x.flatten(0, -4), scale_factor=0.5, mode="area").reshape(*x.shape[:-2], 32, 56)


@pytest.mark.parametrize("resampler", RESAMPLERS)
def test_resamplers_shape_range_and_fidelity(scene, resampler):
    base = _down(scene.background)
    up = resize_video(base, (64, 112), resampler)
    assert up.shape == scene.background.shape and up.dtype == torch.float32
    assert float(up.min()) >= 0 and float(up.max()) <= 1
    assert psnr(up, scene.background) > 20  # close to the original, whatever the kernel
    # stacks with leading dims keep them
    assert resize_video(torch.rand(2, 3, 3, 8, 8), (16, 12), resampler).shape == (2, 3, 3, 16, 12)


def test_smooth_kernels_beat_nearest(scene):
    base = _down(scene.background)
    quality = {r: psnr(resize_video(base, (64, 112), r), scene.background) for r in RESAMPLERS}
    assert quality["bicubic"] > quality["nearest"] and quality["lanczos"] > quality["nearest"]


def test_user_upscaled_videos_are_validated(scene):
    solos_base, bg_base = _down(scene.solos), _down(scene.background)
    solos_hr, bg_hr = upscale_removal_outputs(solos_base, bg_base, (64, 112), solos_upscaled=scene.solos,
                                              background_upscaled=scene.background)
    assert torch.equal(solos_hr, scene.solos) and torch.equal(bg_hr, scene.background)  # used as given
    with pytest.raises(ValueError, match="background_upscaled has 5 frames"):
        upscale_removal_outputs(solos_base, bg_base, (64, 112), background_upscaled=scene.background[:5])
    with pytest.raises(ValueError, match="upscaled to the input's size"):
        upscale_removal_outputs(solos_base, bg_base, (64, 112), background_upscaled=scene.background[..., :100])
    with pytest.raises(ValueError, match="N = 2"):
        upscale_removal_outputs(solos_base, bg_base, (64, 112), solos_upscaled=scene.solos[:1])
    with pytest.raises(ValueError, match="resampler"):
        resize_video(bg_base, (64, 112), "magic")


def test_input_detail_only_where_one_object_is_visible(scene):
    blurred = resize_video(_down(scene.solos), (64, 112), "bilinear")
    masks = scene.masks.clone()
    masks[1, :, :, :, :] = torch.maximum(masks[1], masks[0])  # force an overlap: object 0's area is shared
    out = solos_with_input_detail(blurred, scene.composite, masks)
    alone = (masks[0] > 0.5) & (masks[1] <= 0.5)
    shared = (masks[0] > 0.5) & (masks[1] > 0.5)
    assert torch.equal(out[0][alone.expand_as(out[0])], scene.composite[alone.expand_as(out[0])])
    assert torch.equal(out[0][shared.expand_as(out[0])], blurred[0][shared.expand_as(out[0])])
    assert torch.equal(out[0][(masks[0] <= 0.5).expand_as(out[0])], blurred[0][(masks[0] <= 0.5).expand_as(out[0])])


def test_upscale_and_refine_gives_full_resolution_layers(scene):
    solos_base, bg_base, masks_base = _down(scene.solos), _down(scene.background), (_down(scene.masks) > 0.5).float()
    base = fit.fit_layers(solos_base, bg_base, masks_base, preset="preview", steps=40, seed=0, device="cpu")
    calls = []
    layers, background_hr = upscale_and_refine(
        base, solos_base, bg_base, scene.composite, scene.masks, resampler="bicubic", preset="preview", steps=15,
        seed=0, device="cpu", progress=lambda step, total, preview: calls.append((step, total)))
    assert layers.rgb.shape == scene.layer_rgb.shape and layers.alpha.shape == scene.layer_alpha.shape
    assert background_hr.shape == scene.background.shape
    assert calls[-1] == (15, 15)
    # the full-resolution alpha stays close to the upsampled base alpha it is supervised by
    up_alpha = resize_video(base.alpha, (64, 112), "bilinear")
    assert (layers.alpha - up_alpha).abs().mean() < 0.1
    # and the layers explain their objects: opaque inside the object masks
    assert float(layers.alpha[scene.masks > 0.5].mean()) > 0.7


def test_upscale_and_refine_bad_inputs(scene):
    solos_base, bg_base, masks_base = _down(scene.solos), _down(scene.background), (_down(scene.masks) > 0.5).float()
    base = fit.fit_layers(solos_base, bg_base, masks_base, preset="preview", steps=2, seed=0, device="cpu")
    with pytest.raises(ValueError, match="masks_hr"):
        upscale_and_refine(base, solos_base, bg_base, scene.composite, scene.masks[:1], steps=1, device="cpu")
    with pytest.raises(ValueError, match="masks_hr"):
        upscale_and_refine(base, solos_base, bg_base, scene.composite, scene.masks[..., :100], steps=1, device="cpu")
    with pytest.raises(TypeError, match="base_fit"):
        upscale_and_refine("fit", solos_base, bg_base, scene.composite, scene.masks, steps=1, device="cpu")
