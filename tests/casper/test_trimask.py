"""Trimask jobs: values, overlap rule, binarisation, dilation, trimask files, input errors."""
import pytest
import torch

from casper_core import TrimaskJobs, build_trimask_jobs
from casper_core.trimask import dilate_masks


def _video(frames=3, height=24, width=32):
    return torch.rand(frames, height, width, 3, generator=torch.Generator().manual_seed(0))


def test_background_and_solo_values_and_remove_wins_on_overlap():
    video = _video()
    masks = torch.zeros(2, 3, 24, 32)
    masks[0, :, 4:12, 4:12] = 1.0
    masks[1, :, 8:16, 8:20] = 1.0  # overlaps object 0 on rows 8..11, cols 8..11
    jobs = build_trimask_jobs(video, masks, dilate=0)
    assert jobs.names == ["background", "solo_0", "solo_1"]
    assert jobs.trimasks.shape == (3, 3, 24, 32) and jobs.trimasks.dtype == torch.float32
    background, solo0, solo1 = jobs.trimasks
    union = (masks > 0).any(0)
    assert torch.equal(background, torch.where(union, 1.0, 0.5))
    overlap = (masks[0] > 0) & (masks[1] > 0)
    assert overlap.any()
    # solo_0: object 0 kept except where object 1 (removed) overlaps it
    assert torch.all(solo0[(masks[0] > 0) & ~overlap] == 0.0)
    assert torch.all(solo0[masks[1] > 0] == 1.0)
    assert torch.all(solo1[overlap] == 1.0) and torch.all(solo1[(masks[1] > 0) & ~overlap] == 0.0)
    assert torch.all(solo1[~union] == 0.5) and set(solo1.unique().tolist()) == {0.0, 0.5, 1.0}


def test_single_object_gives_only_the_background_job():
    masks = torch.zeros(1, 3, 24, 32)
    masks[0, :, 2:5, 2:5] = 1
    jobs = build_trimask_jobs(_video(), masks)
    assert jobs.names == ["background"] and jobs.trimasks.shape == (1, 3, 24, 32)


def test_dilation_is_a_square_of_the_given_width():
    masks = torch.zeros(2, 1, 24, 32)
    masks[0, 0, 12, 16] = 1.0
    masks[1, 0, 0, 0] = 1.0
    jobs = build_trimask_jobs(_video(1), masks, dilate=11)
    removed = jobs.trimasks[0, 0] == 1.0
    expected = torch.zeros(24, 32, dtype=torch.bool)
    expected[7:18, 11:22] = True  # 11 × 11 around (12, 16)
    expected[0:6, 0:6] = True  # clipped at the corner
    assert torch.equal(removed, expected)
    # dilate=0 disables dilation
    jobs0 = build_trimask_jobs(_video(1), masks, dilate=0)
    assert int((jobs0.trimasks[0, 0] == 1.0).sum()) == 2
    # an even width is anchored like OpenCV's cv2.dilate (anchor w//2): a pixel at 12 covers 11..14 for w = 4
    even = dilate_masks(masks[0:1, 0] > 0, 4)[0]
    assert torch.equal(even.nonzero()[:, 0].unique(), torch.arange(11, 15))


def test_resize_then_binarise_at_240_of_255():
    masks = torch.zeros(1, 1, 4, 4)
    masks[0, 0, 0:2, 0:2] = 1.0  # a full 2x2 block → 1.0 after area resize
    masks[0, 0, 2:4, 0:2] = torch.tensor([[1.0, 1.0], [1.0, 0.9]])  # mean 0.975 ≥ 240/255 = 0.941
    masks[0, 0, 0:2, 2:4] = torch.tensor([[1.0, 1.0], [1.0, 0.7]])  # mean 0.925 < 0.941
    video = torch.rand(1, 4, 4, 3)
    jobs = build_trimask_jobs(video, masks, dilate=0, size=(2, 2))
    assert jobs.trimasks.shape == (1, 1, 2, 2)
    assert jobs.trimasks[0, 0].tolist() == [[1.0, 0.5], [1.0, 0.5]]


def test_trimask_file_convention_and_internal_convention():
    # file: white keep, grey neutral, black remove (thresholds 64/255 and 192/255)
    values = torch.tensor([0, 63, 64, 128, 192, 193, 255], dtype=torch.uint8).view(1, 1, 7)
    video = values[..., None].expand(1, 1, 7, 3).contiguous()  # [T,H,W,3], channel 0 is read
    jobs = TrimaskJobs.from_trimask_video(video)
    assert jobs.names == ["background"]
    assert jobs.trimasks[0, 0, 0].tolist() == [1.0, 1.0, 0.5, 0.5, 0.5, 0.0, 0.0]
    internal = torch.tensor([0.0, 0.24, 0.25, 0.5, 0.75, 0.76, 1.0]).view(1, 1, 7)
    jobs = TrimaskJobs.from_trimask_video(internal, convention="internal")
    assert jobs.trimasks[0, 0, 0].tolist() == [0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.0]
    several = TrimaskJobs.from_trimask_video(torch.zeros(2, 3, 8, 8), convention="internal", names=["a", "b"])
    assert several.names == ["a", "b"] and several.trimasks.shape == (2, 3, 8, 8)


@pytest.mark.parametrize(
    "masks, match",
    [
        (torch.zeros(1, 4, 24, 32), "frames"),
        (torch.zeros(1, 3, 24, 30), "size"),
        (torch.zeros(0, 3, 24, 32), "no object masks"),
        (torch.zeros(3, 24), "masks"),
    ],
)
def test_bad_masks_are_refused(masks, match):
    with pytest.raises(ValueError, match=match):
        build_trimask_jobs(_video(), masks)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="video"):
        build_trimask_jobs(torch.zeros(3, 24, 32), torch.zeros(1, 3, 24, 32))
    with pytest.raises(ValueError, match="dilate"):
        build_trimask_jobs(_video(), torch.zeros(1, 3, 24, 32), dilate=-1)
    with pytest.raises(ValueError, match="names"):
        TrimaskJobs(["a"], torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="convention"):
        TrimaskJobs.from_trimask_video(torch.zeros(1, 4, 4), convention="other")


def test_float_0_255_and_nan_trimask_videos_are_refused():
    grey = torch.full((2, 8, 8), 127.0)  # a float 0..255 trimask video: its neutral grey would read as "keep"
    with pytest.raises(ValueError, match=r"trimask_video: values range 127\.\.127, expected float values in 0\.\.1 "
                                         r"\(or uint8 0\.\.255\); 0\.\.255 data must be divided by 255"):
        TrimaskJobs.from_trimask_video(grey)
    # the same values as uint8, or divided by 255, keep their neutral level
    assert TrimaskJobs.from_trimask_video(grey.to(torch.uint8)).trimasks.unique().tolist() == [0.5]
    assert TrimaskJobs.from_trimask_video(grey / 255).trimasks.unique().tolist() == [0.5]
    nan = torch.full((2, 8, 8), 0.5)
    nan[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"trimask_video: 1 value\(s\) are NaN or infinite"):
        TrimaskJobs.from_trimask_video(nan, convention="internal")


def _with_object(masks, value):
    masks = masks.clone()
    masks[:, :, 4:12, 4:12] = value
    return masks


def test_trimask_jobs_and_object_masks_refuse_bad_values():
    with pytest.raises(ValueError, match=r"trimasks: values range 0\.\.255, expected values in \{0, 0\.5, 1\}"):
        TrimaskJobs(["background"], torch.tensor([0.0, 127.0, 255.0]).view(1, 1, 1, 3))
    masks = torch.zeros(1, 3, 24, 32)
    masks[0, 1, 5, 5] = float("nan")
    with pytest.raises(ValueError, match=r"masks: 1 value\(s\) are NaN or infinite; expected finite mask values"):
        build_trimask_jobs(_video(), masks)
    with pytest.raises(ValueError, match=r"masks: values range 0\.\.255, .*divided by 255"):
        build_trimask_jobs(_video(), _with_object(torch.zeros(1, 3, 24, 32), 255.0))
    # bool masks and the three trimask levels pass
    assert build_trimask_jobs(_video(), torch.ones(1, 3, 24, 32, dtype=torch.bool), dilate=0).trimasks.min() == 1.0
    assert TrimaskJobs(["a"], torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3)).trimasks.numel() == 3
