"""Synthetic scenes: determinism, shapes, exact ground truth, effects, camera and depth order."""
import math

import pytest
import torch

from omnimatte_core.synthetic import EFFECT_TYPES, composite_layers, make_scene


@pytest.fixture(scope="module")
def scene3():
    return make_scene(seed=3, num_objects=3, frames=12, height=64, width=112)


@pytest.fixture(scope="module")
def scene2():
    return make_scene()


def _tensors(scene):
    return {k: v for k, v in vars(scene).items() if isinstance(v, torch.Tensor)}


def test_same_seed_gives_identical_scene_and_other_seed_differs():
    a = make_scene(seed=5, num_objects=2, frames=6, height=48, width=80)
    b = make_scene(seed=5, num_objects=2, frames=6, height=48, width=80)
    c = make_scene(seed=6, num_objects=2, frames=6, height=48, width=80)
    for name, value in _tensors(a).items():
        assert torch.equal(value, getattr(b, name)), name
    assert not torch.equal(a.composite, c.composite)
    assert not torch.equal(a.layer_alpha, c.layer_alpha)


@pytest.mark.parametrize("objects,frames,height,width,camera", [
    (1, 1, 16, 16, "static"), (2, 5, 40, 70, "pan"), (3, 9, 72, 48, "static"), (3, 4, 33, 61, "pan"),
])
def test_shapes_dtypes_and_ranges(objects, frames, height, width, camera):
    scene = make_scene(1, objects, frames, height, width, camera=camera)
    N, T, H, W = objects, frames, height, width
    expected = {"background": (T, 3, H, W), "composite": (T, 3, H, W), "solos": (N, T, 3, H, W),
                "layer_rgb": (N, T, 3, H, W), "layer_alpha": (N, T, 1, H, W), "object_alpha": (N, T, 1, H, W),
                "masks": (N, T, 1, H, W), "effect_alpha": (N, T, 1, H, W), "object_depth": (T, N),
                "depth": (T, 1, H, W), "order": (T, N)}
    for name, shape in expected.items():
        value = getattr(scene, name)
        assert tuple(value.shape) == shape, name
        assert value.device.type == "cpu"
        if name == "order":
            assert value.dtype == torch.int64
            assert torch.equal(value.sort(dim=1).values, torch.arange(N).expand(T, N))
        else:
            assert value.dtype == torch.float32, name
            assert value.min() >= 0 and value.max() <= 1, name
    assert scene.camera == camera and len(scene.effect_types) == N
    assert set(scene.masks.unique().tolist()) <= {0.0, 1.0}
    assert scene.masks.sum() > 0  # every scene shows its objects


def test_solos_are_each_layer_over_background(scene3):
    a = scene3.layer_alpha
    expected = a * scene3.layer_rgb + (1 - a) * scene3.background.unsqueeze(0)
    assert torch.allclose(scene3.solos, expected, atol=1e-6)
    # layer alpha is the object over its effect, and the layer colour is straight (0 where nothing is)
    o, e = scene3.object_alpha, scene3.effect_alpha
    assert torch.allclose(a, o + e * (1 - o), atol=1e-6)
    assert torch.all(scene3.layer_rgb[(a == 0).expand_as(scene3.layer_rgb)] == 0)


def test_composite_is_back_to_front_over_by_order(scene3):
    out = scene3.background.clone()
    for t in range(scene3.num_frames):
        for index in reversed(scene3.order[t].tolist()):
            alpha = scene3.layer_alpha[index, t]
            out[t] = alpha * scene3.layer_rgb[index, t] + (1 - alpha) * out[t]
    assert torch.allclose(scene3.composite, out, atol=1e-6)
    assert torch.allclose(composite_layers(scene3.layer_rgb, scene3.layer_alpha, scene3.background, scene3.order),
                          out, atol=1e-6)
    # and the objects change the video
    assert (scene3.composite - scene3.background).abs().amax() > 0.2


def test_masks_are_object_only_and_each_effect_is_substantial(scene3):
    assert scene3.effect_types == ["shadow", "reflection", "dust"]
    assert torch.equal(scene3.masks, (scene3.object_alpha > 0.5).float())
    for i in range(3):
        effect_only = (scene3.effect_alpha[i] > 0.1) & (scene3.object_alpha[i] == 0)
        assert not scene3.masks[i][effect_only].any()
        strong = scene3.effect_alpha[i] > 0.1
        outside = strong & (scene3.masks[i] < 0.5)
        # effects are clearly visible, mostly outside the object, and not a copy of the mask
        assert outside.sum() >= 0.3 * scene3.masks[i].sum(), scene3.effect_types[i]
        assert outside.sum() >= 0.8 * strong.sum(), scene3.effect_types[i]
        # object alpha is 1 inside with a 1-px antialiased edge: about one fractional pixel per pixel of outline
        alpha = scene3.object_alpha[i, 0, 0]
        assert (alpha == 1).sum() > 50
        outline = 2 * math.sqrt(math.pi * alpha.sum().item())  # perimeter of a disc of the same area
        assert 0.6 * outline < ((alpha > 0) & (alpha < 1)).sum() < 1.6 * outline
    # shadows are black, effect alpha stays in its documented range
    shadow = scene3.effect_alpha[0]
    assert 0.3 <= shadow.max() <= 0.6 and 0.3 <= scene3.effect_alpha[1].max() <= 0.5
    assert 0.2 <= scene3.effect_alpha[2].max() <= 0.4
    shadow_only = ((shadow > 0.1) & (scene3.object_alpha[0] == 0)).expand(-1, 3, -1, -1)
    assert torch.all(scene3.layer_rgb[0][shadow_only] == 0)


def test_reflection_stays_in_the_water_below_its_object(scene3):
    reflection, obj = scene3.effect_alpha[1], scene3.masks[1]
    rows = torch.arange(reflection.shape[-2]).view(1, 1, -1, 1).float()
    lowest_object_row = (obj * rows).amax()
    assert (reflection > 0).any()
    assert (rows.expand_as(reflection)[reflection > 0]).min() > lowest_object_row


def test_reflection_mirrors_the_object_about_the_water_line(scene3):
    from omnimatte_core.synthetic import WATER_LINE

    water_row = round(WATER_LINE * scene3.background.shape[-2])
    reflection = scene3.effect_alpha[1, :, 0, water_row:water_row + 6]  # the first rows of water
    mirrored = scene3.object_alpha[1, :, 0, water_row - 6:water_row].flip(1)
    ratio = reflection[mirrored > 0.5] / mirrored[mirrored > 0.5]
    assert ratio.numel() > 0
    assert torch.all((ratio > 0.3) & (ratio <= 0.5))  # alpha about 0.45, fading slowly with depth


def test_shadow_and_dust_change_the_solo_video_as_described(scene3):
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    for i in (0, 2):  # shadow, dust
        effect_only = ((scene3.effect_alpha[i] > 0.2) & (scene3.object_alpha[i] == 0))[:, 0]
        solo = (scene3.solos[i] * luma).sum(1)[effect_only]
        background = (scene3.background * luma).sum(1)[effect_only]
        assert effect_only.sum() > 20
        if scene3.effect_types[i] == "shadow":
            assert torch.all(solo < background)  # a black shadow only darkens
        assert (solo - background).abs().mean() > 0.02  # visible in the video


def test_effects_argument_overrides_defaults():
    scene = make_scene(0, 2, 4, 48, 80, effects=["dust", "dust"])
    assert scene.effect_types == ["dust", "dust"]
    dust_only = ((scene.effect_alpha[0] > 0.1) & (scene.object_alpha[0] == 0))[:, 0]
    colours = scene.layer_rgb[0].permute(1, 0, 2, 3)[:, dust_only]  # [3, pixels]
    assert colours.shape[1] > 0
    assert torch.all(colours.std(dim=1) < 1e-6)  # a single brownish dust colour
    assert colours[0, 0] > colours[2, 0]


def test_pan_moves_background_while_static_is_constant():
    static = make_scene(2, 2, 8, 48, 100, camera="static")
    pan = make_scene(2, 2, 8, 48, 100, camera="pan")
    assert all(torch.equal(static.background[0], frame) for frame in static.background)
    assert (pan.background[0] - pan.background[-1]).abs().mean() > 0.01
    # the view travels 12% of the width (12 px here) to the right over the world: content slides left
    assert torch.allclose(pan.background[-1, :, :, :88], pan.background[0, :, :, 12:], atol=1e-5)
    # the objects are still in view at the end of the pan
    assert (pan.composite[-1] - pan.background[-1]).abs().amax() > 0.2


def test_default_two_object_scene_swaps_order_while_objects_overlap(scene2):
    order = scene2.order
    changes = (order[1:] != order[:-1]).any(dim=1).nonzero().flatten()
    assert len(changes) >= 1
    t = int(changes[0]) + 1
    # the swap happens where the two objects overlap in the image, so it changes the composite
    window = scene2.masks[0, t - 2:t + 2] * scene2.masks[1, t - 2:t + 2]
    assert window.sum() > 0
    # order follows depth: nearest first
    depths = scene2.object_depth.gather(1, order)
    assert torch.all(depths[:, 0] <= depths[:, 1])


def test_depth_video_matches_object_depth_inside_masks(scene3):
    for t in range(scene3.num_frames):
        for rank, index in enumerate(scene3.order[t].tolist()):
            inside = scene3.masks[index, t, 0] > 0
            for nearer in scene3.order[t, :rank].tolist():
                inside &= scene3.masks[nearer, t, 0] == 0
            assert torch.allclose(scene3.depth[t, 0][inside], scene3.object_depth[t, index].expand(int(inside.sum())))
    uncovered = scene3.masks.sum(0)[:, 0] == 0
    assert scene3.depth[:, 0][uncovered].min() > scene3.object_depth.max()


@pytest.mark.parametrize("kwargs,name", [
    ({"num_objects": 0}, "num_objects"), ({"num_objects": 4}, "num_objects"), ({"frames": 0}, "frames"),
    ({"height": 15}, "height"), ({"width": 8}, "width"), ({"camera": "dolly"}, "camera"),
    ({"effects": ["shadow"]}, "effects"), ({"effects": ["shadow", "fog"]}, "effects"), ({"seed": -1}, "seed"),
    ({"frames": 2.5}, "frames"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_scene(**kwargs)


def test_effect_types_are_known():
    assert set(EFFECT_TYPES) == {"shadow", "reflection", "dust"}


def test_rendering_in_frame_chunks_does_not_change_the_scene(monkeypatch):
    import omnimatte_core.synthetic as synthetic

    whole = make_scene(4, 3, 5, 40, 64, camera="pan")
    monkeypatch.setattr(synthetic, "_CHUNK_PIXELS", 40 * 64 * 2)  # two frames at a time
    chunked = make_scene(4, 3, 5, 40, 64, camera="pan")
    for name, value in _tensors(whole).items():
        assert torch.allclose(value, getattr(chunked, name), atol=1e-6), name


@pytest.mark.parametrize("camera", ["static", "pan"])
def test_rendering_only_a_window_around_each_object_matches_full_frames(monkeypatch, camera):
    import omnimatte_core.synthetic as synthetic

    windowed = make_scene(8, 3, 6, 56, 96, camera=camera)
    monkeypatch.setattr(synthetic, "_render_window", lambda spec, s, camera_x, cx, cy, height, width, water_row:
                        (0, height, 0, width))
    full = make_scene(8, 3, 6, 56, 96, camera=camera)
    assert not torch.equal(full.effect_alpha, torch.zeros_like(full.effect_alpha))
    for name, value in _tensors(full).items():
        assert torch.allclose(value, getattr(windowed, name), atol=1e-6), name


def test_to_moves_every_tensor():
    scene = make_scene(0, 1, 2, 16, 16)
    moved = scene.to("meta")  # a real device change without needing a GPU
    assert moved.effect_types == scene.effect_types and moved.camera == scene.camera
    for name, value in _tensors(moved).items():
        assert value.device.type == "meta" and value.shape == getattr(scene, name).shape, name
    assert scene.background.device.type == "cpu"  # the original is untouched
