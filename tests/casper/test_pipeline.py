"""CasperPipeline on a tiny random model: lengths and sizes, determinism, batching, progress, input errors."""
import pytest
import torch

from casper_core import CasperPipeline, TrimaskJobs, build_trimask_jobs


def make_video(frames, height=16, width=16, seed=0):
    """A random ``[T,H,W,3]`` video in 0..1."""
    return torch.rand(frames, height, width, 3, generator=torch.Generator().manual_seed(seed))


def make_masks(frames, height=16, width=16):
    """Two object masks ``[2,T,H,W]``: a square top-left and a moving bar bottom-right."""
    masks = torch.zeros(2, frames, height, width)
    masks[0, :, 1 : height // 2, 1 : width // 2] = 1.0
    for t in range(frames):
        x = (t % (width // 2)) + width // 4
        masks[1, t, height // 2 :, x : x + 3] = 1.0
    return masks


@pytest.mark.parametrize("frames", [1, 9, 85, 100, 197])
def test_output_has_the_input_length_and_size(tiny_pipe, frames):
    video = make_video(frames)
    jobs = build_trimask_jobs(video, make_masks(frames)[:1], dilate=3)
    calls = []
    result = tiny_pipe(video, jobs, steps=1, progress=lambda step, total: calls.append((step, total)))
    assert result.names == ["background"]
    assert result.videos.shape == (1, frames, 16, 16, 3) and result.videos.dtype == torch.float32
    assert 0.0 <= result.videos.min() and result.videos.max() <= 1.0
    assert result.videos.std() > 0.01  # a real decoded video, not a constant
    assert calls == [(1, 1)]


def test_multidiffusion_lengths_with_small_windows(tiny_pipe):
    video = make_video(30)
    jobs = build_trimask_jobs(video, make_masks(30), dilate=3)
    result = tiny_pipe(video, jobs, steps=2, window_frames=9, overlap_frames=4)
    assert result.names == ["background", "solo_0", "solo_1"]
    assert result.videos.shape == (3, 30, 16, 16, 3)


def test_same_seed_same_output_other_seed_other_output(tiny_pipe):
    video = make_video(9, 16, 32)
    jobs = build_trimask_jobs(video, make_masks(9, 16, 32), dilate=3)
    first = tiny_pipe(video, jobs, steps=2, window_frames=9, overlap_frames=4).videos
    again = tiny_pipe(video, jobs, steps=2, window_frames=9, overlap_frames=4).videos
    other = tiny_pipe(video, jobs, steps=2, window_frames=9, overlap_frames=4, seed=1).videos
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-3


def test_batched_jobs_equal_jobs_run_one_by_one(tiny_pipe):
    video = make_video(13)
    jobs = build_trimask_jobs(video, make_masks(13), dilate=3)
    kwargs = dict(steps=2, window_frames=9, overlap_frames=4)
    batched = tiny_pipe(video, jobs, **kwargs)
    one_by_one = tiny_pipe(video, jobs, batch_size=1, **kwargs)
    alone = tiny_pipe(video, jobs.select(["solo_1"]), **kwargs)
    assert batched.names == one_by_one.names == jobs.names
    torch.testing.assert_close(batched.videos, one_by_one.videos, rtol=0, atol=1e-5)
    torch.testing.assert_close(batched["solo_1"], alone["solo_1"], rtol=0, atol=1e-5)
    # the jobs really differ (different trimasks → different outputs)
    assert (batched.videos[0] - batched.videos[1]).abs().max() > 1e-3


def test_a_trimask_tensor_is_accepted_and_neutral_values_are_snapped(tiny_pipe):
    video = make_video(5)
    trimask = torch.full((5, 16, 16), 0.5)
    trimask[:, 4:12, 4:12] = 1.0
    exact = tiny_pipe(video, trimask, steps=1, window_frames=9, overlap_frames=4)
    off_grid = trimask.clamp(0.3, 0.9) + 0.05  # 0.55 and 0.95: snapped to neutral and remove
    snapped = tiny_pipe(video, off_grid, steps=1, window_frames=9, overlap_frames=4)
    assert exact.names == ["job_0"]
    assert torch.equal(exact.videos, snapped.videos)


def test_guidance_runs_the_negative_prompt(tiny_pipe):
    video = make_video(5)
    jobs = build_trimask_jobs(video, make_masks(5)[:1], dilate=3)
    kwargs = dict(steps=2, window_frames=9, overlap_frames=4)
    plain = tiny_pipe(video, jobs, **kwargs).videos
    guided = tiny_pipe(video, jobs, guidance_scale=3.0, negative_prompt="blurry", **kwargs).videos
    guided_other = tiny_pipe(video, jobs, guidance_scale=3.0, negative_prompt="a dog", **kwargs).videos
    assert (plain - guided).abs().max() > 1e-4
    assert (guided - guided_other).abs().max() > 1e-5


def test_noise_augmentation_follows_the_config_flag(tiny_pipe, tiny_components):
    video = make_video(5)
    jobs = build_trimask_jobs(video, make_masks(5)[:1], dilate=3)
    kwargs = dict(steps=1, window_frames=9, overlap_frames=4)
    seeded = tiny_pipe(video, jobs, **kwargs).videos
    none = tiny_pipe(video, jobs, noise_augmentation="none", **kwargs).videos
    assert (seeded - none).abs().max() > 1e-5
    torch.manual_seed(7)
    reference_a = tiny_pipe(video, jobs, noise_augmentation="reference", **kwargs).videos
    torch.manual_seed(7)
    reference_b = tiny_pipe(video, jobs, noise_augmentation="reference", **kwargs).videos
    assert torch.equal(reference_a, reference_b)
    flag_off = CasperPipeline(**tiny_components)
    flag_off.transformer.register_to_config(add_noise_in_inpaint_model=False)
    try:
        assert torch.equal(flag_off(video, jobs, **kwargs).videos, none)
    finally:
        tiny_components["transformer"].register_to_config(add_noise_in_inpaint_model=True)


def test_working_size_resizes_and_returns_the_input_size(tiny_pipe):
    video = make_video(5, 20, 28)
    jobs = build_trimask_jobs(video, make_masks(5, 20, 28), dilate=3)
    result = tiny_pipe(video, jobs, steps=1, window_frames=9, overlap_frames=4, height=16, width=32)
    assert result.videos.shape == (3, 5, 20, 28, 3)


def test_progress_can_interrupt_within_one_step(tiny_pipe):
    video = make_video(5)
    jobs = build_trimask_jobs(video, make_masks(5), dilate=3)
    seen = []

    class Stop(Exception):
        pass

    def progress(step, total):
        seen.append((step, total))
        raise Stop

    calls = []
    handle = tiny_pipe.transformer.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(Stop):
            tiny_pipe(video, jobs, steps=5, batch_size=1, window_frames=13, overlap_frames=8, progress=progress)
    finally:
        handle.remove()
    assert seen == [(1, 15)]  # 5 steps × 3 batches of one job
    assert len(calls) == 1  # one window (13 frames → 4 latents): stopped after the first transformer call


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(video=make_video(5, 16, 24)), "width"),
        (dict(video=make_video(5, 20, 16)), "height"),
        (dict(jobs=torch.zeros(1, 4, 16, 16)), "frames"),
        (dict(jobs=torch.zeros(1, 5, 16, 32)), "size"),
        (dict(jobs=torch.zeros(0, 5, 16, 16)), "no trimask jobs"),
        (dict(video=torch.zeros(5, 16, 16)), "video"),
        (dict(video=torch.zeros(5, 16, 16, 3, dtype=torch.uint8)), "video"),
        (dict(steps=0), "steps"),
        (dict(guidance_scale=0.5), "guidance_scale"),
        (dict(overlap_frames=8, window_frames=9), "overlap_frames"),
        (dict(window_frames=2), "window_frames"),
        (dict(batch_size=0), "batch_size"),
        (dict(height=16), "height, width"),
        (dict(height=20, width=16), "height"),
        (dict(noise_augmentation="random"), "noise_augmentation"),
    ],
)
def test_bad_inputs_are_refused_with_the_argument_named(tiny_pipe, change, match):
    kwargs = dict(video=make_video(5), steps=1, window_frames=9, overlap_frames=4)
    kwargs.update(change)
    video = kwargs.pop("video")
    jobs = kwargs.pop("jobs", None)
    if jobs is None:  # trimasks that fit the video, so only the changed argument is wrong
        jobs = torch.full((1, *video.shape[:3]), 0.5)
    with pytest.raises(ValueError, match=match):
        tiny_pipe(video, jobs, **kwargs)


def test_jobs_of_the_wrong_type_are_refused(tiny_pipe):
    with pytest.raises(TypeError, match="jobs"):
        tiny_pipe(make_video(5), [[0.5]], steps=1)


def test_components_keep_their_names_and_a_non_inpaint_transformer_is_refused(tiny_components):
    pipe = CasperPipeline(**tiny_components)
    for name in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert getattr(pipe, name) is tiny_components[name]
    assert pipe.execution_device == torch.device("cpu")
    pipe.set_execution_device("cpu")
    assert pipe.execution_device == torch.device("cpu")
    from diffusers import CogVideoXTransformer3DModel

    plain = CogVideoXTransformer3DModel.from_config(
        {**dict(tiny_components["transformer"].config), "in_channels": 16}
    )
    with pytest.raises(ValueError, match="in_channels"):
        CasperPipeline(**{**tiny_components, "transformer": plain})


def test_identical_jobs_get_identical_noise_unless_a_generator_is_shared(tiny_pipe):
    video = make_video(5)
    trimask = torch.full((2, 5, 16, 16), 0.5)
    trimask[:, :, 4:12, 4:12] = 1.0
    kwargs = dict(steps=1, window_frames=9, overlap_frames=4)
    fresh = tiny_pipe(video, trimask, **kwargs).videos
    assert torch.equal(fresh[0], fresh[1])
    shared = tiny_pipe(video, trimask, generator=torch.Generator().manual_seed(0), **kwargs).videos
    assert torch.equal(shared[0], fresh[0])  # the first job draws what a fresh generator draws
    assert (shared[1] - shared[0]).abs().max() > 1e-3  # the reference's behaviour: later jobs draw further


def test_no_guidance_encodes_only_the_prompt(tiny_pipe):
    calls = []
    handle = tiny_pipe.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        tiny_pipe(make_video(5), torch.full((5, 16, 16), 0.5), steps=1, window_frames=9, overlap_frames=4)
        assert len(calls) == 1
        tiny_pipe(make_video(5), torch.full((5, 16, 16), 0.5), steps=1, window_frames=9, overlap_frames=4,
                  guidance_scale=2.0)
        assert len(calls) == 3
    finally:
        handle.remove()


def _with(tensor, index, value):
    tensor = tensor.clone()
    tensor[index] = value
    return tensor


@pytest.mark.parametrize(
    "video, jobs, match",
    [
        # one NaN pixel would make the whole output NaN
        (_with(make_video(5), (2, 3, 4, 0), float("nan")), None, r"video: 1 value\(s\) are NaN"),
        (_with(make_video(5), (0, 0, 0, 1), float("inf")), None, r"video: 1 value\(s\) are NaN or infinite"),
        # a 0..255 float video
        (make_video(5) * 255, None, r"video: values range .*\.\.2[0-9.]+, expected finite RGB values in 0\.\.1"),
        (make_video(5) - 0.5, None, r"video: values range -0\.[0-9]+\.\..*expected finite RGB values in 0\.\.1"),
        # a float 0..255 trimask (its neutral 127.5 would count as "remove") and a NaN trimask
        (make_video(5), torch.full((1, 5, 16, 16), 127.5), r"jobs: values range 127\.5\.\.127\.5, expected values in "
                                                            r"\{0, 0\.5, 1\} or 0\.\.1.*divided by 255"),
        (make_video(5), _with(torch.full((1, 5, 16, 16), 0.5), (0, 1, 2, 3), float("nan")), r"jobs: 1 value\(s\) are NaN"),
    ],
)
def test_non_finite_and_out_of_range_values_are_refused(tiny_pipe, video, jobs, match):
    jobs = torch.full((1, 5, 16, 16), 0.5) if jobs is None else jobs
    with pytest.raises(ValueError, match=match):
        tiny_pipe(video, jobs, steps=1, window_frames=9, overlap_frames=4)


def test_small_resampling_overshoot_is_clamped_not_refused(tiny_pipe):
    video = make_video(5)
    trimask = torch.full((1, 5, 16, 16), 0.5)
    trimask[:, :, 4:12, 4:12] = 1.0
    kwargs = dict(steps=1, window_frames=9, overlap_frames=4)
    overshoot = video.clone()
    overshoot[:, :8] = overshoot[:, :8] * 1.08 - 0.04  # -0.04..1.04, as bicubic resizing gives at edges
    assert overshoot.min() < 0 and overshoot.max() > 1
    result = tiny_pipe(overshoot, trimask, **kwargs).videos
    torch.testing.assert_close(result, tiny_pipe(overshoot.clamp(0, 1), trimask, **kwargs).videos, rtol=0, atol=0)
    assert torch.isfinite(result).all()


def test_a_clip_that_fits_one_window_ignores_the_overlap(tiny_pipe):
    # The reference's defaults for a short clip: window 13 frames (4 latents) with overlap ("stride") 16 (4 latents).
    video = make_video(13)
    trimask = torch.full((1, 13, 16, 16), 0.5)
    trimask[:, :, 4:12, 4:12] = 1.0
    with_overlap = tiny_pipe(video, trimask, steps=1, window_frames=13, overlap_frames=16)
    without = tiny_pipe(video, trimask, steps=1, window_frames=13, overlap_frames=0)
    assert with_overlap.videos.shape == (1, 13, 16, 16, 3)
    assert torch.equal(with_overlap.videos, without.videos)
    # a clip that needs several windows still needs an overlap shorter than the window
    longer = make_video(30)
    with pytest.raises(ValueError, match=r"overlap_frames: 30 frames need several windows of 13 frames"):
        tiny_pipe(longer, torch.full((1, 30, 16, 16), 0.5), steps=1, window_frames=13, overlap_frames=16)


def test_live_progress_covers_sampling_and_decoding_with_previews(tiny_pipe):
    from casper_core.vae_decode import decode_units

    video = make_video(9, 16, 32)
    jobs = build_trimask_jobs(video, make_masks(9, 16, 32), dilate=3)  # background + 2 solos
    steps, calls, live = 2, [], []
    result = tiny_pipe(video, jobs, steps=steps, batch_size=2, window_frames=9, overlap_frames=4,
                       progress=lambda step, total: calls.append((step, total)),
                       live_progress=lambda done, total, preview: live.append((done, total, preview)))
    assert result.videos.shape == (3, 9, 16, 32, 3)
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]  # the two-argument progress is unchanged
    units = decode_units(tiny_pipe.vae, 4, 2, 4)  # 9 frames, padded to 13 → 4 latent frames of 2×4
    total = steps * 2 + 3 * units  # two batches of steps, then every job's decode chunks
    assert [c[:2] for c in live] == [(i, total) for i in range(1, total + 1)]
    previews = [c[2] for c in live if c[2] is not None]
    assert len(previews) == steps * 2  # one per denoising step; decode chunks carry none
    for preview in previews:
        assert preview.shape == (16, 32, 3) and preview.dtype == torch.float32
        assert 0.0 <= float(preview.min()) and float(preview.max()) <= 1.0
    # sampling first, then decoding, in each batch: steps of batch 1, its 2 decodes, steps of batch 2, its decode
    kinds = ["step" if c[2] is not None else "decode" for c in live]
    assert kinds == ["step"] * steps + ["decode"] * 2 * units + ["step"] * steps + ["decode"] * units


def test_live_progress_can_interrupt_during_the_decode(tiny_pipe):
    video = make_video(5)
    jobs = build_trimask_jobs(video, make_masks(5), dilate=3).select(["background"])

    class Stop(Exception):
        pass

    seen = []

    def live(done, total, preview):
        seen.append(preview is None)
        if preview is None:
            raise Stop

    with pytest.raises(Stop):
        tiny_pipe(video, jobs, steps=1, live_progress=live)
    assert seen == [False, True]  # the step's preview, then the first decode chunk stopped the run


def test_decode_reports_every_chunk_of_every_tile(tiny_pipe):
    from casper_core.vae_decode import decode_chunks, decode_units

    vae = tiny_pipe.vae
    latents = torch.randn(1, 4, 16, 12, 12, generator=torch.Generator().manual_seed(1))
    calls = []
    was_tiling = getattr(vae, "use_tiling", False)
    with torch.no_grad():
        vae.disable_tiling()
        tiny_pipe.decode(latents, progress=lambda: calls.append(1))
        assert len(calls) == decode_units(vae, 4, 12, 12) == len(decode_chunks(4)) == 3
        vae.enable_tiling(tile_sample_min_height=48, tile_sample_min_width=40)
        try:
            calls.clear()
            tiny_pipe.decode(latents, progress=lambda: calls.append(1))
            # tiles every 5 latents down (0, 5, 10) and every 4 across (0, 4, 8): 9 tiles × 3 chunks
            assert len(calls) == decode_units(vae, 4, 12, 12) == 27
        finally:
            vae.disable_tiling()
            if was_tiling:
                vae.enable_tiling()
