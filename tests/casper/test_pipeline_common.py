"""The steps both Casper pipelines share (casper_core.pipeline_common)."""
import pytest
import torch

from casper_core import pipeline_common as common


def test_job_batches_cover_every_job_once_in_order():
    assert common.job_batches(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert common.job_batches(3, None) == [slice(0, 3)]
    assert common.job_batches(3, 10) == [slice(0, 3)]


def test_batch_start_noise_repeats_the_first_draw_unless_the_generator_is_shared():
    noise = [torch.full((1, 2, 3), float(i)) for i in range(4)]
    fresh = common.batch_start_noise(noise, shared_generator=False, job_slice=slice(1, 4))
    assert fresh.shape == (3, 2, 3) and torch.equal(fresh, torch.zeros(3, 2, 3))
    shared = common.batch_start_noise(noise, shared_generator=True, job_slice=slice(1, 4))
    assert torch.equal(shared[:, 0, 0], torch.tensor([1.0, 2.0, 3.0]))


def test_further_jobs_noise_only_with_a_shared_generator():
    assert common.further_jobs_noise((1, 2), torch.float32, None, 3) == []
    drawn = common.further_jobs_noise((1, 2), torch.float32, torch.Generator().manual_seed(0), 3)
    assert len(drawn) == 2 and not torch.equal(drawn[0], drawn[1])


def test_prepared_inputs_are_padded_scaled_and_neutral_mapped():
    video = torch.ones(3, 16, 16, 3)
    trimasks = torch.full((2, 3, 16, 16), 0.5)
    pixels, masks = common.prepare_pixels_and_masks(video, trimasks, (16, 16), total_frames=5)
    assert pixels.shape == (1, 3, 5, 16, 16) and torch.equal(pixels, torch.ones_like(pixels))
    assert masks.shape == (2, 1, 5, 16, 16) and torch.allclose(masks, torch.tensor(common.NEUTRAL_VALUE))


def test_output_video_is_cropped_resized_and_channels_last():
    decoded = torch.rand(3, 9, 16, 32)
    out = common.to_output_video(decoded, frames=7, work_size=(16, 32), in_size=(8, 16))
    assert out.shape == (7, 8, 16, 3) and out.dtype == torch.float32 and 0 <= out.min() <= out.max() <= 1
    same = common.to_output_video(decoded, frames=7, work_size=(16, 32), in_size=(16, 32))
    assert torch.equal(same, decoded[:, :7].permute(1, 2, 3, 0))


def test_checks_name_the_bad_argument():
    with pytest.raises(ValueError, match="batch_size"):
        common.check_batch_size(0)
    with pytest.raises(ValueError, match="overlap_frames: 41 frames need several windows"):
        common.check_overlap_frames(40, frames=41, window_frames=21, window=6, clip_latents=11)
    common.check_overlap_frames(40, frames=9, window_frames=21, window=6, clip_latents=3)  # one window: ignored
    with pytest.raises(TypeError, match="prompt: expected a string"):
        common.tokenize_prompt(None, 3, 8)
