"""Live previews of Casper's sampling: a linear latent → colour map fitted on the clip's own latents."""
import torch

from casper_core.preview import fit_latent_to_rgb, latent_frame_targets, latents_to_image


def test_latent_frame_targets_follow_the_vaes_frame_grouping():
    # 9 frames → 3 latent frames: frame 0 alone, then frames 1-4 and 5-8
    pixels = torch.arange(9.0).view(1, 9, 1, 1).expand(3, 9, 4, 4)
    targets = latent_frame_targets(pixels, 3, (2, 2))
    assert targets.shape == (3, 3, 2, 2)
    assert targets[:, 0, 0, 0].tolist() == [0.0, 2.5, 6.5]


def test_the_fitted_map_recovers_a_linear_colour_code():
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(3, 16, 4, 6, generator=generator)  # [F,C,h,w]
    weights, bias = torch.randn(16, 3, generator=generator) * 0.2, torch.tensor([0.1, -0.2, 0.3])
    colours = torch.einsum("fchw,cd->fdhw", latents, weights) + bias.view(1, 3, 1, 1)  # [F,3,h,w]
    # the video those latents encode: each latent frame's colour over its frames (1, then 4 each), 8× larger
    frames = torch.cat([colours[:1], colours[1:].repeat_interleave(4, dim=0)])  # [9,3,h,w]
    pixels = torch.nn.functional.interpolate(frames, scale_factor=8, mode="nearest").permute(1, 0, 2, 3)
    mapping = fit_latent_to_rgb(latents, pixels)
    assert mapping.shape == (17, 3)
    torch.testing.assert_close(mapping[:16], weights, rtol=0, atol=1e-2)
    torch.testing.assert_close(mapping[16], bias, rtol=0, atol=1e-2)
    image = latents_to_image(latents[1], mapping, scale=8)
    assert image.shape == (32, 48, 3) and 0 <= float(image.min()) and float(image.max()) <= 1
    expected = ((colours[1] + 1) / 2).clamp(0, 1).permute(1, 2, 0)
    torch.testing.assert_close(latents_to_image(latents[1], mapping, scale=1), expected, rtol=0, atol=2e-2)
