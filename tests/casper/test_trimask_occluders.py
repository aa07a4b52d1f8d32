"""The occluded-foreground recipe on trimask jobs: objects in front of object i are removed over object i's mask in
its solo job, objects behind it only outside its mask."""
import pytest
import torch

from casper_core.trimask import KEEP, NEUTRAL, REMOVE, build_trimask_jobs, occluders_per_object, parse_occluders
from omnimatte_core.synthetic import make_scene


def _pole_in_front_of_a_dog(frames=6, height=32, width=48):
    """Object 0 (a dog) walks behind object 1 (a static pole): a synthetic occlusion."""
    masks = torch.zeros(2, frames, height, width)
    for t in range(frames):
        masks[0, t, 12:24, 4 + 4 * t: 20 + 4 * t] = 1
    masks[1, :, 4:30, 20:26] = 1
    return torch.zeros(frames, height, width, 3), masks


@pytest.mark.parametrize("occluders", [[1, 0], {0: [1]}, [[1], []], "1,0", "0:1"])
def test_solo_of_the_occluded_object_removes_its_occluder_over_it(occluders):
    video, masks = _pole_in_front_of_a_dog()
    if isinstance(occluders, str):
        occluders = parse_occluders(occluders)
    jobs = build_trimask_jobs(video, masks, dilate=0, occluders=occluders)
    dog, pole = masks[0] > 0, masks[1] > 0
    overlap, dog_only, pole_only = dog & pole, dog & ~pole, pole & ~dog
    assert overlap.any()
    background, solo_dog, solo_pole = jobs.trimasks
    assert torch.all(background[dog | pole] == REMOVE) and torch.all(background[~(dog | pole)] == NEUTRAL)
    # the dog's solo: the pole goes everywhere, over the dog too (Casper completes the hidden part)
    assert torch.all(solo_dog[overlap] == REMOVE) and torch.all(solo_dog[pole_only] == REMOVE)
    assert torch.all(solo_dog[dog_only] == KEEP)
    # the pole's solo: the dog goes only where it is not behind the pole
    assert torch.all(solo_pole[pole] == KEEP) and torch.all(solo_pole[dog_only] == REMOVE)
    assert torch.all(solo_dog[~(dog | pole)] == NEUTRAL) and torch.all(solo_pole[~(dog | pole)] == NEUTRAL)


def test_without_occluders_remove_wins_everywhere_as_released():
    video, masks = _pole_in_front_of_a_dog()
    jobs = build_trimask_jobs(video, masks, dilate=0)
    overlap = (masks[0] > 0) & (masks[1] > 0)
    assert torch.all(jobs.trimasks[1][overlap] == REMOVE) and torch.all(jobs.trimasks[2][overlap] == REMOVE)


def test_synthetic_scene_frames_follow_its_depth_order():
    scene = make_scene(seed=0, num_objects=2, frames=24, height=64, width=112)
    masks = scene.masks[:, :, 0] if scene.masks.ndim == 5 else scene.masks  # [N,T,H,W]
    overlap = (masks[0] > 0.5) & (masks[1] > 0.5)
    frames = [t for t in range(masks.shape[1]) if overlap[t].any()]
    assert frames, "the scene's objects should pass each other"
    t = frames[0]
    order = scene.order[t].tolist()  # front to back in that frame
    front, back = order
    video = scene.composite[t:t + 1].permute(0, 2, 3, 1)
    jobs = build_trimask_jobs(video, masks[:, t:t + 1], dilate=0, occluders=order)
    both = overlap[t:t + 1]
    assert torch.all(jobs.trimasks[1 + back][both] == REMOVE)   # the hidden object's solo reveals it
    assert torch.all(jobs.trimasks[1 + front][both] == KEEP)    # the front object keeps what covers the other


@pytest.mark.parametrize("occluders, message", [
    ([0, 0], "each of the 2 objects once"),
    ({0: [0]}, "cannot occlude itself"),
    ({0: [5]}, "not an object index"),
    ([[1]], "1 per-object lists"),
])
def test_bad_occluders_are_named(occluders, message):
    with pytest.raises(ValueError, match=message):
        occluders_per_object(occluders, 2)


def test_parse_occluders_reads_both_forms():
    assert parse_occluders("") is None
    assert parse_occluders("2, 0,1") == [2, 0, 1]
    assert parse_occluders("0:1,2; 3:1") == {0: [1, 2], 3: [1]}
    with pytest.raises(ValueError, match="front to back"):
        parse_occluders("a,b")


def test_command_line_and_remove_objects_take_occluders():
    from casper_core.decompose import build_parser
    from casper_core.pipeline import CasperResult
    from casper_core.removal import remove_objects

    assert build_parser().parse_args(["--occluders", "1,0"]).occluders == [1, 0]
    assert build_parser().parse_args([]).occluders is None
    seen = {}

    def pipeline(frames, jobs, **options):  # records the jobs; returns the input for every job
        seen["jobs"] = jobs
        return CasperResult(jobs.names, frames[None].expand(len(jobs), -1, -1, -1, -1))

    video, masks = _pole_in_front_of_a_dog()
    removal = remove_objects(pipeline, video.permute(0, 3, 1, 2), masks, dilate=0, size=(32, 48), occluders=[1, 0])
    overlap = (masks[0] > 0) & (masks[1] > 0)
    assert removal.solos.shape[0] == 2 and torch.all(seen["jobs"].trimasks[2][overlap] == KEEP)
