"""Layer editing: new background, reorder, drop, retime, fade — exact results, inputs never modified."""
import pytest
import torch

from omnimatte_core.compositing import reconstruct
from omnimatte_core.editing import (drop_layers, fade_curve, fade_layer, recomposite, reorder_layers, resize_background,
                                    retime_curve, retime_layer, select_layers, with_background)


@pytest.fixture()
def snapshot(gt_layers):
    """Copies of every tensor, to check after each test that nothing was modified in place."""
    before = [gt_layers.rgb.clone(), gt_layers.alpha.clone(), gt_layers.background.clone(), gt_layers.masks.clone(),
              gt_layers.order.clone()]
    yield
    after = [gt_layers.rgb, gt_layers.alpha, gt_layers.background, gt_layers.masks, gt_layers.order]
    assert all(torch.equal(a, b) for a, b in zip(before, after)), "an edit modified its input"


def test_new_background_shows_through_where_alpha_is_zero(gt_layers, snapshot):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 50, 200, generator=g)  # another size and aspect ratio: resized to cover
    video = recomposite(gt_layers, image)
    expected_bg = resize_background(image, gt_layers.size, gt_layers.num_frames)
    assert expected_bg.shape == (16, 3, 64, 112)
    clear = (gt_layers.alpha.sum(dim=0) == 0).expand_as(video)
    assert clear.any() and torch.equal(video[clear], expected_bg[clear])
    opaque = (gt_layers.alpha.amax(dim=0) == 1).expand_as(video)  # objects stay as they were
    assert torch.allclose(video[opaque], reconstruct(gt_layers)[opaque], atol=1e-6)
    # a background video of more frames is cut to length; recomposite(None) keeps the own background
    long_video = torch.rand(20, 3, 64, 112, generator=g)
    assert torch.equal(with_background(gt_layers, long_video).background, long_video[:16])
    assert torch.allclose(recomposite(gt_layers), reconstruct(gt_layers))


def test_resize_background_cover_and_stretch():
    image = torch.zeros(3, 10, 40)
    image[:, :, 15:25] = 1  # a bright band in the middle third
    cover = resize_background(image, (20, 20), 2)  # scale x2 then centre-crop 20 of 80 columns: all band
    assert cover.shape == (2, 3, 20, 20) and cover[:, :, :, 5:15].min() > 0.99
    stretch = resize_background(image, (20, 20), 1, fit="stretch")
    assert stretch[0, 0, 10, 0] < 0.01 and stretch[0, 0, 10, 10] > 0.99
    with pytest.raises(ValueError, match="background has 5 frames"):
        resize_background(torch.zeros(5, 3, 8, 8), (8, 8), 10)
    with pytest.raises(ValueError, match="fit"):
        resize_background(image, (8, 8), 1, fit="zoom")


def test_drop_removes_a_layer_contribution(scene, gt_layers, snapshot):
    dropped = drop_layers(gt_layers, "reflection_blob")
    assert dropped.names == ["shadow_blob", "dust_blob"] and dropped.num_layers == 2
    # object 1 is gone with its reflection: what remains is objects 0 and 2 over the background
    expected = reconstruct(select_layers(gt_layers, [0, 2]))
    assert torch.equal(reconstruct(dropped), expected)
    only_1 = (gt_layers.alpha[1] > 0) & (gt_layers.alpha[0] == 0) & (gt_layers.alpha[2] == 0)
    only_1 = only_1.expand(-1, 3, -1, -1)
    assert only_1.any() and torch.allclose(reconstruct(dropped)[only_1], scene.background[only_1], atol=1e-6)
    # the per-frame order keeps the relative order of the remaining layers (0 before 2 in every frame)
    assert dropped.order.tolist() == [[0, 1]] * 16
    with pytest.raises(ValueError, match="drop removes all 3 layers"):
        drop_layers(gt_layers, [0, 1, 2])
    with pytest.raises(ValueError, match="drop index 5"):
        drop_layers(gt_layers, 5)


def test_reorder_changes_what_is_in_front(gt_layers, snapshot):
    front_1 = reorder_layers(gt_layers, "1,0,2")
    assert front_1.order.tolist() == [[1, 0, 2]] * 16
    both = (gt_layers.alpha[0] == 1) & (gt_layers.alpha[1] == 1)  # where objects 0 and 1 overlap
    assert both.any()
    picture = reconstruct(front_1)
    mask = both.expand(-1, 3, -1, -1)
    assert torch.allclose(picture[mask], gt_layers.rgb[1][mask])
    with pytest.raises(ValueError, match="order"):
        reorder_layers(gt_layers, "0,1")


def test_retime_shift_hold_speed(gt_layers, snapshot):
    shifted = retime_layer(gt_layers, 0, shift=3)
    assert torch.equal(shifted.alpha[0, 3:], gt_layers.alpha[0, :-3])  # exactly three frames later
    assert torch.equal(shifted.rgb[0, 3:], gt_layers.rgb[0, :-3].where(gt_layers.alpha[0, :-3] > 0,
                                                                       shifted.rgb[0, 3:]))
    assert shifted.alpha[0, :3].max() == 0  # nothing to show before it starts
    assert torch.equal(shifted.alpha[1:], gt_layers.alpha[1:])  # other layers untouched
    assert torch.equal(shifted.masks[0, 3:], gt_layers.masks[0, :-3])
    early = retime_layer(gt_layers, 0, shift=-2, outside="hold")
    assert torch.equal(early.alpha[0, -3:], gt_layers.alpha[0, -1:].expand(3, -1, -1, -1))  # holds its last frame

    assert retime_curve(8, hold_at=2, hold_frames=3).tolist() == [0, 1, 2, 2, 2, 3, 4, 5]
    held = retime_layer(gt_layers, 0, hold_at=5)  # freeze from frame 5 to the end
    assert all(torch.equal(held.alpha[0, t], gt_layers.alpha[0, 5]) for t in range(5, 16))

    slow = retime_layer(gt_layers, 1, speed=0.5)
    assert torch.equal(slow.alpha[1, 6], gt_layers.alpha[1, 3])
    middle = 0.5 * (gt_layers.alpha[1, 3] + gt_layers.alpha[1, 4])  # frame 7 shows source 3.5: a blend
    assert torch.allclose(slow.alpha[1, 7], middle)
    fast = retime_layer(gt_layers, 1, speed=2.0, interpolation="nearest")
    assert torch.equal(fast.alpha[1, 4], gt_layers.alpha[1, 8]) and fast.alpha[1, 8:].max() == 0
    with pytest.raises(ValueError, match="speed"):
        retime_layer(gt_layers, 0, speed=0)
    with pytest.raises(ValueError, match="times"):
        retime_layer(gt_layers, 0, times=torch.zeros(3))
    with pytest.raises(ValueError, match="not both"):
        retime_layer(gt_layers, 0, 2, times=torch.zeros(16))
    reversed_clip = retime_layer(gt_layers, 0, times=torch.arange(15, -1, -1))  # any curve: here played backwards
    assert torch.equal(reversed_clip.alpha[0], gt_layers.alpha[0].flip(0))


def test_fade_scales_alpha(gt_layers, snapshot):
    curve = fade_curve(16, fade_in=4, fade_out=2, start=2, end=13, opacity=0.8)
    expected = [0, 0, 0, 0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.4, 0, 0, 0]
    assert torch.allclose(curve, torch.tensor(expected))
    faded = fade_layer(gt_layers, "dust_blob", fade_in=4, fade_out=2, start=2, end=13, opacity=0.8)
    assert torch.allclose(faded.alpha[2], gt_layers.alpha[2] * curve.view(-1, 1, 1, 1))
    assert torch.equal(faded.rgb, gt_layers.rgb) and torch.equal(faded.alpha[:2], gt_layers.alpha[:2])
    with pytest.raises(ValueError, match="opacity"):
        fade_layer(gt_layers, 0, opacity=1.5)
    with pytest.raises(ValueError, match="layer 'nobody'"):
        fade_layer(gt_layers, "nobody")
    with pytest.raises(ValueError, match="end"):
        fade_curve(10, start=5, end=2)


def test_select_layers_in_the_listed_order(gt_layers, snapshot):
    picked = select_layers(gt_layers, ["dust_blob", 0])
    assert picked.names == ["dust_blob", "shadow_blob"]
    assert torch.equal(picked.alpha[0], gt_layers.alpha[2]) and torch.equal(picked.alpha[1], gt_layers.alpha[0])
    assert picked.order.tolist() == [[1, 0]] * 16  # depth order unchanged: shadow_blob (old 0) in front of dust
    assert reorder_layers(picked, range(2)).order.tolist() == [[0, 1]] * 16
    with pytest.raises(ValueError, match="twice"):
        select_layers(gt_layers, [0, 0])
