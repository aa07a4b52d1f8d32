"""The pipeline against a slow, independent re-computation of what the public reference computes.

Every expected value here is derived from the observed reference semantics (PARITY.md), not from our modules:
the mask latent's sampling pattern, the initial noise order, DDIM with v-prediction / zero-SNR / trailing spacing,
the multidiffusion windows and ramps, and the decoded length.
"""
import math

import pytest
import torch
from diffusers.models.embeddings import get_3d_rotary_pos_embed

from casper_core.pipeline import NEUTRAL_VALUE, reference_input_noise


def _random_trimask(frames, height, width, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.tensor([0.0, NEUTRAL_VALUE, 1.0])[torch.randint(0, 3, (1, 1, frames, height, width), generator=g)]


def test_mask_latent_samples_frames_4k_minus_2_and_4k_minus_1(tiny_pipe):
    frames, height, width = 13, 32, 48
    trimask = _random_trimask(frames, height, width, seed=3)
    latents = tiny_pipe.mask_latents(trimask, 4, (4, 6))  # [1,F,1,h,w]
    keep = 1.0 - trimask[0, 0]
    expected = torch.zeros(4, 4, 6)
    for i in range(4):
        for j in range(6):
            rows, cols = slice(8 * i + 3, 8 * i + 5), slice(8 * j + 3, 8 * j + 5)
            expected[0, i, j] = keep[0, rows, cols].mean()
            for k in range(1, 4):
                expected[k, i, j] = keep[4 * k - 2 : 4 * k, rows, cols].mean()
    torch.testing.assert_close(latents[0, :, 0], expected * 0.7, rtol=0, atol=1e-6)
    # uniform regions: keep 0.7, neutral 0.7·128/255 ≈ 0.3514, remove 0
    for value, latent in ((0.0, 0.7), (NEUTRAL_VALUE, 0.3514), (1.0, 0.0)):
        flat = tiny_pipe.mask_latents(torch.full((1, 1, 5, 16, 16), value), 2, (2, 2))
        assert torch.allclose(flat, torch.tensor(latent), atol=1e-4)


def test_reference_input_noise_recipe():
    torch.manual_seed(0)
    noise = reference_input_noise((1, 3, 5, 8, 8))
    torch.manual_seed(0)
    contiguous = torch.randn(1, 3, 5, 8, 8) * 0.0563
    assert noise.shape == (1, 3, 5, 8, 8)
    assert abs(noise.std().item() - 0.0563) < 0.01
    assert not torch.equal(noise, contiguous)  # strides change the order in which values are drawn


def _alphas_cumprod():
    # scaled_linear betas 0.00085 → 0.012, rescaled to zero terminal SNR (Lin et al. 2024, Alg. 1)
    betas = torch.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=torch.float64) ** 2
    sqrt_bar = torch.cumprod(1 - betas, 0).sqrt()
    first, last = sqrt_bar[0].clone(), sqrt_bar[-1].clone()
    sqrt_bar = (sqrt_bar - last) * first / (first - last)
    return (sqrt_bar**2).float()


def _slow_reference_latents(pipe, video, trimask, *, steps, seed, window_frames, overlap_frames, augmentation):
    """The denoised latents [1,F,16,h,w], computed step by step from the reference's documented semantics."""
    frames, height, width = video.shape[:3]
    # padding: smallest 4k+1 ≥ max(T, window) with k odd; symmetric repeats (already checked in test_temporal)
    total = next(m for m in range(1, 2000) if m >= max(frames, window_frames) and m % 4 == 1 and (m // 4) % 2 == 1)
    index = list(range(frames))
    while len(index) < total:
        index = index + index[::-1]
    index = torch.tensor(index[:total])
    pixels = video.permute(3, 0, 1, 2)[:, index][None] * 2 - 1  # [1,3,Tp,H,W]
    mask = trimask[index][None, None]
    mask = torch.where(mask > 0.75, 1.0, torch.where(mask < 0.25, 0.0, NEUTRAL_VALUE))
    pixels = pixels + torch.where(pixels == -1, 0.0, augmentation)
    video_latents = pipe.vae.encode(pixels)[0].mode().permute(0, 2, 1, 3, 4) * 0.7
    num_latents = (total - 1) // 4 + 1
    h, w = height // 8, width // 8
    keep = 1.0 - mask
    mask_latents = torch.cat(
        [
            torch.nn.functional.interpolate(keep[:, :, :1], size=(1, h, w), mode="trilinear"),
            torch.nn.functional.interpolate(keep[:, :, 1:], size=(num_latents - 1, h, w), mode="trilinear"),
        ],
        dim=2,
    ).permute(0, 2, 1, 3, 4) * 0.7
    inpaint = torch.cat([mask_latents, video_latents], dim=2)
    ids = pipe.tokenizer(["empty scene"], padding="max_length", max_length=226, truncation=True, return_tensors="pt")
    embeds = pipe.text_encoder(ids.input_ids)[0]
    latents = torch.randn((1, num_latents, 16, h, w), generator=torch.Generator().manual_seed(seed))

    alphas = _alphas_cumprod()
    timesteps = [round(1000 - i * 1000 / steps) - 1 for i in range(steps)]
    window = (window_frames - 1) // 4 + 1
    window = window if window % 2 == 0 else (window_frames - 5) // 4 + 1
    s = overlap_frames // 4
    config = pipe.transformer.config

    def step(x, inp, t):
        rope = get_3d_rotary_pos_embed(
            embed_dim=config.attention_head_dim, crops_coords=None, grid_size=(h // 2, w // 2),
            temporal_size=x.shape[1] // 2, grid_type="slice", max_size=(150, 150),
        )
        v = pipe.transformer(
            hidden_states=torch.cat([x, inp], dim=2), encoder_hidden_states=embeds,
            timestep=torch.tensor([t]), image_rotary_emb=rope, return_dict=False,
        )[0]
        a_t = alphas[t]
        a_prev = alphas[t - 1000 // steps] if t - 1000 // steps >= 0 else torch.tensor(1.0)
        x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * v
        eps = a_t.sqrt() * v + (1 - a_t).sqrt() * x
        return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps

    for t in timesteps:
        if num_latents <= window:
            latents = step(latents, inpaint, t)
            continue
        canvas, weight_sum = torch.zeros_like(latents), torch.zeros(1, num_latents, 1, 1, 1)
        begin = 0
        while begin < num_latents:
            end = min(begin + window, num_latents)
            weights = torch.ones(end - begin)
            if begin > 0:
                weights[:s] = torch.linspace(0, 1, s + 2)[1:-1]
            if end < num_latents:
                weights[-s:] = torch.linspace(1, 0, s + 2)[1:-1]
            weights = weights.view(1, -1, 1, 1, 1)
            canvas[:, begin:end] += step(latents[:, begin:end], inpaint[:, begin:end], t) * weights
            weight_sum[:, begin:end] += weights
            begin = end - s
            if end >= num_latents:
                break
        latents = canvas / weight_sum
    return latents


@pytest.mark.parametrize(
    "frames, window_frames, overlap_frames",
    [(7, 9, 4), (21, 21, 8), (29, 17, 8)],  # padded single window; one window; four windows (overlap 2 latents)
)
def test_denoised_latents_match_the_slow_reference(tiny_pipe, frames, window_frames, overlap_frames):
    g = torch.Generator().manual_seed(frames)
    video = torch.rand(frames, 16, 32, 3, generator=g)
    video[:, 0, 0] = 0.0  # exact black: no input noise there
    trimask = _random_trimask(frames, 16, 32, seed=frames)[0, 0]
    total = next(m for m in range(1, 2000) if m >= max(frames, window_frames) and m % 4 == 1 and (m // 4) % 2 == 1)
    augmentation = torch.randn(1, 3, total, 16, 32, generator=g) * 0.0563
    captured = []
    decode = tiny_pipe.decode
    tiny_pipe.decode = lambda latents: captured.append(latents.clone()) or decode(latents)
    try:
        tiny_pipe(video, trimask, steps=3, seed=5, window_frames=window_frames, overlap_frames=overlap_frames,
                  noise_augmentation=lambda pixels: augmentation)
    finally:
        del tiny_pipe.decode
    with torch.no_grad():
        expected = _slow_reference_latents(
            tiny_pipe, video, trimask, steps=3, seed=5, window_frames=window_frames, overlap_frames=overlap_frames,
            augmentation=augmentation,
        )
    assert captured[0].shape == expected.shape
    torch.testing.assert_close(captured[0], expected, rtol=0, atol=2e-5)


def test_scheduler_timesteps_are_trailing(tiny_pipe):
    tiny_pipe.scheduler.set_timesteps(4)
    assert tiny_pipe.scheduler.timesteps.tolist() == [999, 749, 499, 249]
    tiny_pipe.scheduler.set_timesteps(50)
    assert tiny_pipe.scheduler.timesteps.tolist() == list(range(999, 0, -20))
    torch.testing.assert_close(tiny_pipe.scheduler.alphas_cumprod, _alphas_cumprod(), rtol=0, atol=1e-6)


def test_decode_returns_the_padded_length_and_is_causal(tiny_pipe):
    latents = torch.randn(1, 6, 16, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = tiny_pipe.decode(latents)
        prefix = tiny_pipe.decode(latents[:, :5])  # frame 0, then pairs (1,2), (3,4): no single last frame
        first = tiny_pipe.decode(latents[:, :1])
    assert full.shape == (1, 3, 4 * 5 + 1, 16, 16)  # 4(F−1)+1 frames for F = 6
    assert prefix.shape[2] == 17 and first.shape[2] == 1
    torch.testing.assert_close(full[:, :, :17], prefix, rtol=0, atol=1e-6)
    torch.testing.assert_close(full[:, :, :1], first, rtol=0, atol=1e-6)


def test_tiled_decode_keeps_the_length_and_matches_inside_the_first_tile(tiny_pipe):
    vae = tiny_pipe.vae
    latents = torch.randn(1, 4, 16, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = tiny_pipe.decode(latents)
        # 48×40 px tiles (6×5 latents) with diffusers' 1/6 and 1/5 overlaps: a tile every 5 latents down and
        # every 4 across, 8 px blends
        vae.enable_tiling(tile_sample_min_height=48, tile_sample_min_width=40)
        try:
            tiled = tiny_pipe.decode(latents)
            corner = tiny_pipe.decode(latents[..., :6, :5])  # exactly the first tile
        finally:
            vae.disable_tiling()
    assert tiled.shape == whole.shape == (1, 3, 13, 96, 96)
    # the first tile is kept unblended up to where the next tile starts (40 px down, 32 px across)
    torch.testing.assert_close(tiled[..., :40, :32], corner[..., :40, :32], rtol=0, atol=1e-6)
    assert (tiled - whole).abs().mean() < 0.5  # the same picture, tiled (seams differ with random weights)
