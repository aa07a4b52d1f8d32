"""The Layers container validates shapes, ranges, orders and names, naming the field."""
import dataclasses

import pytest
import torch

from omnimatte_core.layers import Layers


def test_defaults_and_properties(gt_layers):
    plain = Layers(gt_layers.rgb, gt_layers.alpha, gt_layers.background)
    assert plain.num_layers == 3 and plain.num_frames == 16 and plain.size == (64, 112)
    assert plain.names == ["layer_0", "layer_1", "layer_2"] and plain.fps == 24.0
    assert plain.order.dtype == torch.int64 and plain.order.tolist() == [[0, 1, 2]] * 16
    copy = dataclasses.replace(gt_layers, fps=30)
    assert copy.fps == 30.0 and copy.rgb is gt_layers.rgb


@pytest.mark.parametrize("field, bad, message", [
    ("alpha", lambda l: l.alpha[:2], "alpha must have shape"),
    ("background", lambda l: l.background[:-1], "background must have shape"),
    ("rgb", lambda l: l.rgb * 2, "rgb must hold values in 0.0..1.0"),
    ("alpha", lambda l: torch.full_like(l.alpha, float("nan")), "alpha contains NaN"),
    ("masks", lambda l: l.masks[:, :, :, :10], "masks must have shape"),
    ("order", lambda l: l.order[:, :2], "order must be"),
    ("order", lambda l: torch.zeros_like(l.order), "not a permutation"),
    ("names", lambda l: ["a", "b"], "names must be a list of 3"),
    ("fps", lambda l: 0, "fps must be a positive"),
])
def test_bad_fields_raise_naming_the_field(gt_layers, field, bad, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(gt_layers, **{field: bad(gt_layers)})


def test_non_tensor_is_a_type_error(gt_layers):
    with pytest.raises(TypeError, match="rgb"):
        Layers(gt_layers.rgb.numpy(), gt_layers.alpha, gt_layers.background)
