"""Optional: the pipeline against the public reference itself (github gen-omnimatte/gen-omnimatte-public).

Runs only when the environment variable GEN_OMNIMATTE_REF names a local checkout of that repository; it is never
downloaded. Both pipelines get identical tiny random weights, inputs, trimask and seed, with the reference's
input-noise augmentation (global RNG) selected on our side; see PARITY.md.
"""
import importlib.util
import os
import sys
import types

import pytest
import torch

REFERENCE = os.environ.get("GEN_OMNIMATTE_REF")
pytestmark = pytest.mark.skipif(not REFERENCE, reason="set GEN_OMNIMATTE_REF to a gen-omnimatte-public checkout")


@pytest.fixture(scope="module")
def reference_pipeline(tiny_components):
    # Its Wan modules (unused here) need torchvision; stand-ins keep the CogVideoX modules importable without it.
    # They are set only while the package loads, so the Wan parity test can import the real modules afterwards.
    stand_ins = [f"videox_fun.models.{name}" for name in (
        "wan_image_encoder", "wan_text_encoder", "wan_transformer3d", "wan_vae", "wan_xlm_roberta")]
    stand_ins += [f"videox_fun.pipeline.{name}" for name in ("pipeline_wan_fun", "pipeline_wan_fun_inpaint")]
    added = [name for name in stand_ins if name not in sys.modules]
    for name in added:
        sys.modules[name] = _Placeholder(name)
    try:
        if "videox_fun" not in sys.modules:  # the checkout's package, loaded from its file (sys.path untouched)
            package_dir = os.path.join(REFERENCE, "videox_fun")
            spec = importlib.util.spec_from_file_location(
                "videox_fun", os.path.join(package_dir, "__init__.py"), submodule_search_locations=[package_dir])
            package = importlib.util.module_from_spec(spec)
            sys.modules["videox_fun"] = package
            spec.loader.exec_module(package)
        from videox_fun.models.cogvideox_transformer3d import CogVideoXTransformer3DModel
        from videox_fun.models.cogvideox_vae import AutoencoderKLCogVideoX
        from videox_fun.pipeline.pipeline_cogvideox_fun_inpaint import CogVideoXFunInpaintPipeline
    finally:
        for name in added:
            sys.modules.pop(name, None)
    from diffusers import DDIMScheduler

    ours = tiny_components
    transformer = CogVideoXTransformer3DModel.from_config(dict(ours["transformer"].config))
    assert not transformer.load_state_dict(ours["transformer"].state_dict(), strict=False).missing_keys
    assert transformer.config.add_noise_in_inpaint_model
    vae = AutoencoderKLCogVideoX.from_config(dict(ours["vae"].config))
    assert not vae.load_state_dict(ours["vae"].state_dict(), strict=False).missing_keys
    return CogVideoXFunInpaintPipeline(
        tokenizer=ours["tokenizer"], text_encoder=ours["text_encoder"], vae=vae, transformer=transformer,
        scheduler=DDIMScheduler.from_config(ours["scheduler"].config),
    )


class _Placeholder(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})


@pytest.mark.parametrize("frames, window_frames, overlap_frames", [(21, 21, 8), (29, 17, 8)])
def test_matches_the_public_reference(tiny_pipe, reference_pipeline, frames, window_frames, overlap_frames):
    g = torch.Generator().manual_seed(frames)
    video = torch.rand(frames, 16, 32, 3, generator=g)
    trimask = torch.full((frames, 16, 32), 127 / 255)
    trimask[:, 2:10, 4:14] = 1.0
    trimask[:, 8:, 18:] = 0.0
    torch.manual_seed(1234)
    with torch.no_grad():
        reference = reference_pipeline(
            "empty scene", num_frames=window_frames, height=16, width=32,
            generator=torch.Generator().manual_seed(0), guidance_scale=1.0, num_inference_steps=3,
            video=video.permute(3, 0, 1, 2).contiguous()[None], mask_video=trimask[None, None], strength=1.0,
            use_trimask=True, zero_out_mask_region=False, temporal_multidiffusion_stride=overlap_frames,
        ).videos[0].permute(1, 2, 3, 0)
    torch.manual_seed(1234)
    ours = tiny_pipe(video, trimask, steps=3, seed=0, window_frames=window_frames, overlap_frames=overlap_frames,
                     noise_augmentation="reference").videos[0]
    assert reference.shape == (frames, 16, 32, 3)
    torch.testing.assert_close(ours, reference.float(), rtol=0, atol=1e-4)
