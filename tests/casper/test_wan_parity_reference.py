"""The Wan2.1-Fun Casper pipeline against the public reference's Wan path (github gen-omnimatte/gen-omnimatte-public).

Runs only when a local checkout of that repository exists: ``.ref/gen-omnimatte-public`` in this project (git-ignored),
or the folder named by the environment variable GEN_OMNIMATTE_REF; it is never downloaded. Both pipelines get
identical tiny random weights (the reference's own transformer, VAE and T5 classes loaded with our tensors under the
original names), the same video, trimask and seed; see PARITY.md, "Wan2.1-Fun".

Harness-only stand-ins: the reference imports torchvision for its CLIP preprocessing (a black picture whose features
it then sets to zero) — a minimal ``to_tensor`` replaces it during the import; its CLIP encoder is replaced by a
module returning the zeros the reference ends up using.
"""
import json
import os
from pathlib import Path

import pytest
import torch

from casper_core import wan_keys
from casper_core.wan_loading import SCHEDULER_CONFIG
from casper_core.wan_testing import import_reference_wan

REFERENCE = Path(os.environ.get("GEN_OMNIMATTE_REF") or Path(__file__).parents[2] / ".ref" / "gen-omnimatte-public")
pytestmark = pytest.mark.skipif(not (REFERENCE / "videox_fun").is_dir(),
                                reason=f"no gen-omnimatte-public checkout at {REFERENCE}")
class _ZeroClip(torch.nn.Module):
    """The reference sets its CLIP features of a black picture to zero; this returns those zeros directly."""

    def forward(self, images):
        return torch.zeros(1, 257, 1280)


@pytest.fixture(scope="module")
def reference_pipeline(tiny_wan_release, tiny_wan_pipe):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from casper_core.wan_testing import TINY_VAE_CONFIG

    Transformer, Vae, VaeCore, TextEncoder, Pipeline = import_reference_wan(REFERENCE)
    ours = tiny_wan_pipe
    transformer = Transformer.from_config(json.loads((tiny_wan_release.base_dir / "config.json").read_text())).eval()
    state = {wan_keys.transformer_key_to_original(k): v for k, v in ours.transformer.state_dict().items()}
    assert not transformer.load_state_dict(state, strict=False).missing_keys
    vae = Vae(latent_channels=16)
    vae.model = VaeCore(dim=TINY_VAE_CONFIG["base_dim"], z_dim=16, dim_mult=TINY_VAE_CONFIG["dim_mult"],
                        num_res_blocks=TINY_VAE_CONFIG["num_res_blocks"], attn_scales=[],
                        temperal_downsample=TINY_VAE_CONFIG["temperal_downsample"], dropout=0.0)
    vae_state = {"model." + wan_keys.vae_key_to_original(k): v for k, v in ours.vae.state_dict().items()}
    assert not vae.load_state_dict(vae_state, strict=False).missing_keys
    config = ours.text_encoder.config
    text_encoder = TextEncoder(
        vocab=config.vocab_size, dim=config.d_model, dim_attn=config.d_kv * config.num_heads, dim_ffn=config.d_ff,
        num_heads=config.num_heads, num_layers=config.num_layers, num_buckets=config.relative_attention_num_buckets,
        shared_pos=False, dropout=0.0)
    t5_state = {wan_keys.t5_key_to_original(k): v for k, v in ours.text_encoder.state_dict().items()
                if wan_keys.t5_key_to_original(k)}
    text_encoder.load_state_dict(t5_state, strict=True)

    class OnCpu(Pipeline):  # diffusers' device lookup does not know the harness's stand-in encoder
        _execution_device = torch.device("cpu")

    return OnCpu(tokenizer=ours.tokenizer, text_encoder=text_encoder.eval(), vae=vae.eval(), transformer=transformer,
                 clip_image_encoder=_ZeroClip(), scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG))


def _reference_padding(x: torch.Tensor, window: int) -> torch.Tensor:
    """The reference's temporal_padding along dim 2: 4k+1 frames, k odd, then at least `window` (cap 197)."""
    length = x.size(2)
    target = (length // 4) * 4 + 1
    target += 4 if target < length else 0
    target += 4 if (target // 4) % 2 == 0 else 0
    target = max(window, min(target, 197))
    while x.size(2) < target:
        x = torch.cat([x, x.flip(2)], dim=2)[:, :, :target]
    return x


@pytest.mark.parametrize("frames, window_frames, overlap_frames, guidance", [
    (22, 9, 4, 1.0),    # padded 22 → 29 frames, windows [0,3) [2,5) [4,7) [5,8) (the last one shifted back)
    (45, 17, 8, 1.0),   # four windows of 5 latent frames
    (21, 9, 4, 3.0),    # classifier-free guidance with a negative prompt
])
def test_wan_matches_the_public_reference(tiny_wan_pipe, reference_pipeline, frames, window_frames, overlap_frames,
                                          guidance):
    g = torch.Generator().manual_seed(frames)
    video = torch.rand(frames, 32, 48, 3, generator=g)
    trimask = torch.full((frames, 32, 48), 127 / 255)
    trimask[:, 4:16, 6:24] = 1.0
    trimask[:, 16:, 24:] = 0.0
    negative = "blurry, static" if guidance > 1 else ""
    with torch.no_grad():
        reference = reference_pipeline(
            "empty scene", negative_prompt=negative, height=32, width=48, num_frames=window_frames,
            video=_reference_padding(video.permute(3, 0, 1, 2).contiguous()[None], window_frames),
            mask_video=_reference_padding(trimask[None, None], window_frames), num_inference_steps=3,
            guidance_scale=guidance, generator=torch.Generator().manual_seed(0), use_trimask=True,
            zero_out_mask_region=False, temporal_multidiffusion_stride=overlap_frames,
        ).videos
    reference = torch.as_tensor(reference)[0].permute(1, 2, 3, 0)[:frames].float()
    ours = tiny_wan_pipe(video, trimask, steps=3, seed=0, window_frames=window_frames, overlap_frames=overlap_frames,
                         guidance_scale=guidance, negative_prompt=negative).videos[0]
    assert ours.shape == reference.shape == (frames, 32, 48, 3)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)
    # sensitivity: the same run with another seed is far away
    other = tiny_wan_pipe(video, trimask, steps=3, seed=1, window_frames=window_frames, overlap_frames=overlap_frames,
                          guidance_scale=guidance, negative_prompt=negative).videos[0]
    assert (other - reference).abs().max() > 1e-2
