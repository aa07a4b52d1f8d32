"""Per-frame depth order: recovered from synthetic depth, both conventions, manual orders, heuristics, bad input."""
import pytest
import torch

from omnimatte_core.ordering import (manual_order, order_from_depth, order_from_mask_position, order_layers,
                                     parse_order)


def test_order_from_metric_depth_recovers_ground_truth_with_swap(scene):
    order = order_from_depth(scene.depth, scene.masks, bright_is_near=False)
    assert order.dtype == torch.int64 and order.shape == scene.order.shape
    assert torch.equal(order, scene.order)
    # the clip really contains the swap of objects 0 and 1, so the test covers it
    assert scene.order[0, 0] == 0 and scene.order[-1, 0] == 1


def test_order_from_disparity_and_conventions(scene):
    disparity = 1.0 / scene.depth  # large = near, as Depth Anything / DepthCrafter output
    assert torch.equal(order_from_depth(disparity, scene.masks, bright_is_near=True), scene.order)
    # the wrong convention reverses the order (no ties here): the switch really matters
    assert torch.equal(order_from_depth(disparity, scene.masks, bright_is_near=False), scene.order.flip(1))
    # [T,H,W] depth, [T,3,H,W] grey-as-RGB depth and [N,T,H,W] masks are accepted too
    assert torch.equal(order_from_depth(scene.depth[:, 0], scene.masks[:, :, 0], bright_is_near=False), scene.order)
    assert torch.equal(order_from_depth(scene.depth.expand(-1, 3, -1, -1), scene.masks, bright_is_near=False),
                       scene.order)


def test_median_ignores_masks_bleeding_onto_the_far_background(scene):
    from omnimatte_core.clean_plate import dilate_masks

    loose = dilate_masks(scene.masks > 0.5, 5).float()  # sloppy segmentation: 2 px onto the background all round
    assert torch.equal(order_from_depth(scene.depth, loose, bright_is_near=False), scene.order)


def test_empty_mask_keeps_previous_place_and_never_visible_goes_last():
    t, h, w = 6, 8, 8
    masks = torch.zeros(3, t, h, w)
    masks[0, :, :4, :4] = 1
    masks[1, :, 4:, 4:] = 1
    masks[1, 2:4] = 0  # object 1 vanishes for two frames
    depth = torch.ones(t, h, w)
    depth[:, :4, :4] = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.5]).view(t, 1, 1)
    depth[:, 4:, 4:] = 0.3  # object 1 nearer whenever visible
    order = order_from_depth(depth, masks, bright_is_near=False)
    assert order.tolist() == [[1, 0, 2]] * t  # keeps its place while invisible; object 2 (never seen) last


def test_hysteresis_stops_flicker_between_objects_at_similar_depth():
    t, h, w = 40, 8, 16
    masks = torch.zeros(2, t, h, w)
    masks[0, :, :, :8] = 1
    masks[1, :, :, 8:] = 1
    g = torch.Generator().manual_seed(0)
    depth = 0.5 + 0.01 * torch.randn(t, 1, 1, 2, generator=g).repeat_interleave(8, dim=3).expand(t, 1, h, w)
    depth = depth.clone()
    depth[0, :, :, 8:] += 0.05  # object 0 clearly in front at the start ...
    depth[t // 2:, :, :, 8:] -= 0.2  # ... object 1 clearly in front from halfway
    plain = order_from_depth(depth, masks, bright_is_near=False)
    steady = order_from_depth(depth, masks, bright_is_near=False, hysteresis=0.2)
    changes = lambda o: int((o[1:] != o[:-1]).any(dim=1).sum())  # noqa: E731
    assert changes(plain) > 3  # noise alone makes the plain order flicker
    assert changes(steady) == 1 and steady[-1].tolist() == [1, 0]  # one real swap survives
    smoothed = order_from_depth(depth, masks, bright_is_near=False, smooth_frames=9)
    assert changes(smoothed) < changes(plain)


def test_mask_position_heuristic_puts_the_lower_object_in_front():
    t, h, w = 4, 20, 20
    masks = torch.zeros(2, t, 1, h, w)
    masks[0, :, :, 2:8, 2:8] = 1  # high in the frame: farther
    masks[1, :, :, 10:18, 10:18] = 1  # reaches lower: nearer
    masks[0, 3, :, 2:8] = 0
    masks[0, 3, :, 14:19, 2:8] = 1  # in the last frame object 0 drops below object 1
    order = order_from_mask_position(masks)
    assert order.tolist() == [[1, 0], [1, 0], [1, 0], [0, 1]]
    assert torch.equal(order_layers(masks), order)  # no depth, no manual order: the heuristic


@pytest.mark.parametrize("text, expected", [("1,0,2", [1, 0, 2]), (" [2 1 0] ", [2, 1, 0]), ("0;2;1", [0, 2, 1]),
                                            ([1, 2, 0], [1, 2, 0]), (torch.tensor([0, 1, 2]), [0, 1, 2])])
def test_parse_order_accepts_common_spellings(text, expected):
    assert parse_order(text, 3).tolist() == expected


@pytest.mark.parametrize("text", ["1,1,2", "0,1", "0,1,3", "a,b,c", "", "1.5,0,2", [0, 1, 1]])
def test_parse_order_rejects_non_permutations(text):
    with pytest.raises(ValueError, match="manual"):
        parse_order(text, 3, name="manual")


def test_manual_order_and_its_priority(scene):
    fixed = manual_order("2,0,1", 5, 3)
    assert fixed.shape == (5, 3) and fixed.tolist() == [[2, 0, 1]] * 5
    t, n = scene.order.shape
    assert torch.equal(order_layers(scene.masks, scene.depth, manual="1,2,0"), manual_order("1,2,0", t, n))
    # a blank manual field means "not given": the depth decides
    assert torch.equal(order_layers(scene.masks, scene.depth, manual="  ", bright_is_near=False), scene.order)
    per_frame = scene.order.flip(1)
    assert torch.equal(order_layers(scene.masks, manual=per_frame), per_frame)
    with pytest.raises(ValueError, match="order"):
        manual_order(torch.zeros(t, n, dtype=torch.long), t, n)


def test_bad_depth_and_masks_name_the_argument(scene):
    with pytest.raises(ValueError, match="depth has 15 frames"):
        order_from_depth(scene.depth[:-1], scene.masks)
    with pytest.raises(ValueError, match="depth is 32x56"):
        order_from_depth(scene.depth[:, :, ::2, ::2], scene.masks)
    # the same depth at half size is fine once resampling is asked for
    half = torch.nn.functional.interpolate(scene.depth, scale_factor=0.5, mode="area")
    assert torch.equal(order_from_depth(half, scene.masks, bright_is_near=False, resize_depth=True), scene.order)
    with pytest.raises(ValueError, match="depth"):
        order_from_depth(scene.depth[:, :1].expand(-1, 2, -1, -1), scene.masks)
    bad = scene.depth.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="depth contains NaN"):
        order_from_depth(bad, scene.masks)
    with pytest.raises(ValueError, match="masks"):
        order_from_depth(scene.depth, scene.masks[0])
    with pytest.raises(TypeError, match="depth"):
        order_from_depth(scene.depth.numpy(), scene.masks)
    with pytest.raises(ValueError, match="percentile"):
        order_from_depth(scene.depth, scene.masks, percentile=150)
    with pytest.raises(ValueError, match="hysteresis"):
        order_from_depth(scene.depth, scene.masks, hysteresis=-0.1)
