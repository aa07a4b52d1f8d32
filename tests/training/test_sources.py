"""Training tuples from each source: shapes, value ranges, and that input, trimask and target agree."""
import numpy as np
import pytest
import torch

from casper_core.training.paste_source import object_paste_tuple
from casper_core.training.real_sources import omnimatte_tuples, read_exported_layers, tripod_tuple
from casper_core.training.storage import append_tuple, create_dataset_root, read_manifest, read_tuple
from casper_core.training.synthetic_source import synthetic_tuple
from casper_core.trimask import KEEP, NEUTRAL, REMOVE
from omnimatte_core.layers import Layers
from omnimatte_core.synthetic import make_scene


def check_tuple(example, frames, height, width):
    assert example.input_video.shape == (frames, height, width, 3)
    assert example.target_video.shape == (frames, height, width, 3)
    assert example.trimask.shape == (frames, height, width)
    assert example.keep_masks.shape[1:] == (frames, height, width) and example.keep_masks.dtype == torch.bool
    for video in (example.input_video, example.target_video):
        assert video.dtype == torch.float32 and 0 <= float(video.min()) and float(video.max()) <= 1
    assert set(torch.unique(example.trimask).tolist()) <= {KEEP, NEUTRAL, REMOVE}
    assert bool((example.trimask == REMOVE).any())


@pytest.mark.parametrize("num_objects", [1, 4, 6])
def test_synthetic_tuple_shapes_and_removal(num_objects):
    example = synthetic_tuple(3, frames=8, height=32, width=48, num_objects=num_objects)
    check_tuple(example, 8, 32, 48)
    assert example.category == "synthetic"
    assert len(example.info["effects"]) == num_objects
    assert len(example.info["removed"]) >= 1 and len(example.info["removed"]) + len(example.info["kept"]) == num_objects
    assert example.keep_masks.shape[0] == len(example.info["kept"])
    # the removed objects (and their effects) make input and target differ
    assert float((example.input_video - example.target_video).abs().max()) > 0.1
    # kept objects are labelled keep wherever no removed object covers them
    if example.keep_masks.shape[0]:
        assert bool((example.trimask[example.keep_masks.any(0)] != NEUTRAL).all())


def test_synthetic_tuple_removing_everything_gives_the_clean_background():
    example = synthetic_tuple(5, frames=6, height=32, width=48, num_objects=2, stationary_share=0.0,
                              lighting_change=0.0, camera="static")
    scene = make_scene(example.info["scene_seeds"][0], 2, 6, 32, 48, camera="static",
                       effects=example.info["effects"])
    if example.info["kept"]:
        pytest.skip("this seed keeps an object")
    assert torch.allclose(example.target_video, scene.background.permute(0, 2, 3, 1), atol=1e-6)
    assert torch.allclose(example.input_video, scene.composite.permute(0, 2, 3, 1), atol=1e-6)


def test_synthetic_tuple_is_a_function_of_its_seed():
    first, second = synthetic_tuple(11, frames=5, height=32, width=32), synthetic_tuple(11, frames=5, height=32, width=32)
    assert torch.equal(first.input_video, second.input_video) and torch.equal(first.trimask, second.trimask)
    assert first.info == second.info


def test_synthetic_stationary_object_does_not_move():
    example = synthetic_tuple(2, frames=6, height=32, width=48, num_objects=1, stationary_share=1.0,
                              lighting_change=0.0, camera="static")
    assert example.info["stationary"] == [True]
    removed = example.trimask == REMOVE
    assert torch.equal(removed[0], removed[-1])
    assert torch.allclose(example.input_video[0], example.input_video[-1])


def test_object_paste_changes_only_the_pasted_region():
    host = make_scene(0, 1, 6, 32, 48)
    donor = make_scene(1, 1, 9, 40, 64)
    example = object_paste_tuple(host.composite.permute(0, 2, 3, 1), donor.composite.permute(0, 2, 3, 1),
                                 donor.masks[0, :, 0] > 0.5, seed=4, host_keep_masks=host.masks[:, :, 0] > 0.5)
    check_tuple(example, 6, 32, 48)
    assert example.category == "object_paste"
    assert torch.equal(example.target_video, host.composite.permute(0, 2, 3, 1))
    changed = (example.input_video - example.target_video).abs().amax(-1) > 1e-6
    assert bool(changed.any()) and bool((example.trimask[changed] == REMOVE).all())
    assert example.keep_masks.shape[0] == 1


def test_omnimatte_tuples_use_the_reconstruction_as_input():
    scene = make_scene(0, 2, 6, 32, 48)
    layers = Layers(rgb=scene.layer_rgb, alpha=scene.layer_alpha, background=scene.background, order=scene.order,
                    masks=scene.masks)
    tuples = omnimatte_tuples(layers, dilate=3)
    assert [t.info["job"] for t in tuples] == ["background", "solo_0", "solo_1"]
    for example in tuples:
        check_tuple(example, 6, 32, 48)
        assert torch.allclose(example.input_video, scene.composite.permute(0, 2, 3, 1), atol=1e-5)
    assert torch.allclose(tuples[0].target_video, scene.background.permute(0, 2, 3, 1), atol=1e-5)
    assert torch.allclose(tuples[1].target_video, scene.solos[0].permute(0, 2, 3, 1), atol=1e-5)
    assert tuples[0].keep_masks.shape[0] == 0 and tuples[1].keep_masks.shape[0] == 1


def test_omnimatte_layers_read_back_from_an_export(tmp_path):
    from omnimatte_core.export import export_layers

    scene = make_scene(0, 2, 4, 32, 48)
    layers = Layers(rgb=scene.layer_rgb, alpha=scene.layer_alpha, background=scene.background, order=scene.order)
    run = export_layers(layers, tmp_path, formats=["png"])
    back = read_exported_layers(run.folder)
    assert back.rgb.shape == layers.rgb.shape and torch.equal(back.order, layers.order)
    assert float((back.alpha - layers.alpha).abs().max()) <= 1.5 / 255 + 1e-6
    assert float((back.background - layers.background).abs().max()) <= 0.5 / 255 + 1e-6


def test_tripod_tuple_targets_the_plate():
    scene = make_scene(0, 2, 6, 32, 48)
    video = scene.composite.permute(0, 2, 3, 1)
    plate = scene.background[0].permute(1, 2, 0)
    example = tripod_tuple(video, scene.masks[:, :, 0], plate, dilate=3)
    check_tuple(example, 6, 32, 48)
    assert torch.equal(example.target_video, plate.expand(6, -1, -1, -1))
    assert bool((example.trimask[scene.masks[:, :, 0].amax(0) > 0.5] == REMOVE).all())
    assert not bool((example.trimask == KEEP).any())
    with pytest.raises(ValueError, match="plate"):
        tripod_tuple(video, scene.masks[:, :, 0], plate[:16])


def test_storage_round_trip_and_never_overwrites(tmp_path):
    example = synthetic_tuple(1, frames=5, height=32, width=48)
    root = create_dataset_root(tmp_path / "set")
    folder = append_tuple(root, example)
    back = read_tuple(folder)
    assert back.category == "synthetic" and back.info["seed"] == 1
    assert float((back.input_video - example.input_video).abs().max()) <= 0.5 / 255 + 1e-6
    assert torch.equal(back.trimask, example.trimask) and torch.equal(back.keep_masks, example.keep_masks)
    assert read_manifest(root) == [{"folder": "tuples/000000_synthetic", "category": "synthetic", "frames": 5,
                                    "height": 32, "width": 48}]
    levels = np.load(folder / "arrays.npz")["trimask"]
    assert set(np.unique(levels).tolist()) <= {0, 128, 255}  # the trimask-file convention
    with pytest.raises(FileExistsError):
        create_dataset_root(root)
