"""The removal contract on Casper: remove_objects(pipeline, video [T,3,H,W], masks [N,T,1,H,W]) -> Removal."""
import pytest
import torch

from casper_core import build_trimask_jobs, remove_objects
from casper_core.pipeline import CasperResult
from casper_core.removal import removal_from_result
from omnimatte_core.removal import Removal


def _video_and_masks(objects: int, frames: int = 5, height: int = 16, width: int = 32):
    video = torch.rand(frames, 3, height, width, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(objects, frames, 1, height, width)
    for i in range(objects):
        masks[i, :, :, 2:8, 3 + 12 * i:9 + 12 * i] = 1.0
    return video, masks


def test_remove_objects_returns_the_named_jobs_as_background_and_solos(tiny_pipe):
    video, masks = _video_and_masks(2)
    removal = remove_objects(tiny_pipe, video, masks, size=(16, 32), steps=1, dilate=3)
    assert isinstance(removal, Removal) and removal.num_objects == 2
    assert removal.background.shape == (5, 3, 16, 32) and removal.solos.shape == (2, 5, 3, 16, 32)
    # the same as the raw call with the same jobs, read back by name
    frames = video.permute(0, 2, 3, 1)
    raw = tiny_pipe(frames, build_trimask_jobs(frames, masks[:, :, 0], dilate=3), steps=1, height=16, width=32)
    assert torch.equal(removal.background, raw["background"].permute(0, 3, 1, 2))
    for i in range(2):
        assert torch.equal(removal.solos[i], raw[f"solo_{i}"].permute(0, 3, 1, 2))
    assert not torch.equal(removal.solos[0], removal.solos[1])


def test_one_object_has_the_input_as_its_solo(tiny_pipe):
    video, masks = _video_and_masks(1)
    removal = remove_objects(tiny_pipe, video, masks, size=(16, 32), steps=1)
    assert removal.solos.shape == (1, 5, 3, 16, 32)
    assert torch.equal(removal.solos[0], video)
    assert not torch.equal(removal.background, video)  # the object was removed


def test_removal_from_result_reads_names_not_positions():
    video = torch.zeros(2, 3, 4, 4)
    videos = torch.stack([torch.full((2, 4, 4, 3), v) for v in (0.3, 0.1, 0.2)])  # [J,T,H,W,3]
    removal = removal_from_result(CasperResult(names=["solo_1", "background", "solo_0"], videos=videos), video)
    assert removal.background.unique().tolist() == pytest.approx([0.1])
    assert [s.unique().item() for s in removal.solos] == pytest.approx([0.2, 0.3])
    # 'background only' jobs: no solo job ran, so the one solo is the input
    only = removal_from_result(CasperResult(names=["background"], videos=videos[:1]), video)
    assert only.num_objects == 1 and torch.equal(only.solos[0], video)


def test_bad_masks_are_refused_before_the_model_runs():
    video, masks = _video_and_masks(2)

    def pipeline(*args, **kwargs):
        raise AssertionError("the model ran although the masks were wrong")

    with pytest.raises(ValueError, match="masks has 4 frames but the video has 5"):
        remove_objects(pipeline, video, masks[:, :4])
    with pytest.raises(ValueError, match=r"solos are \[2, 5, 3, 16, 32\] but background is \[5, 3, 8, 8\]"):
        Removal(background=torch.zeros(5, 3, 8, 8), solos=torch.zeros(2, 5, 3, 16, 32))


def test_the_fit_base_size_is_caspers_working_size():
    # Two constants that cannot share one source (omnimatte_core never imports casper_core): the layer side fits at
    # most Casper's long side first, so Casper's outputs are fitted at their own size.
    from casper_core.defaults import WORK_SIZE, working_size
    from omnimatte_core.upsample import BASE_LONG_SIDE, base_size

    assert max(WORK_SIZE) == BASE_LONG_SIDE
    assert base_size((1080, 1920)) == (378, 672) and working_size((1080, 1920)) == (384, 672)
    assert working_size((1920, 1080)) == (672, 384)
