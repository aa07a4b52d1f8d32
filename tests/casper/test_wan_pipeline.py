"""Casper on Wan2.1-Fun: key mappings, loading of the release layout (full weights and LoRA), and the pipeline on a
tiny random release (fp32, CPU)."""
import json
import shutil

import pytest
import torch

from casper_core import wan_keys
from casper_core.loading import read_safetensors
from casper_core.temporal import plan_full_windows, window_weights
from casper_core.wan_loading import check_wan_base_dir, load_wan_casper_pipeline, read_release_weights
from casper_core.wan_pipeline import NEUTRAL_VALUE, WanCasperPipeline
from casper_core.wan_testing import RELEASE_14B_CONFIG, RELEASE_1_3B_CONFIG


@pytest.mark.parametrize("config", [RELEASE_1_3B_CONFIG, RELEASE_14B_CONFIG], ids=["1.3B", "14B"])
def test_transformer_names_map_both_ways_for_the_release_architectures(config):
    from diffusers import WanTransformer3DModel

    diffusers_config = wan_keys.transformer_config_to_diffusers(config)
    assert diffusers_config["in_channels"] == 36 and diffusers_config["image_dim"] == 1280
    assert diffusers_config["num_attention_heads"] * diffusers_config["attention_head_dim"] == config["dim"]
    with torch.device("meta"):
        model = WanTransformer3DModel.from_config({**diffusers_config, "num_layers": 2})
    keys = list(model.state_dict())
    originals = [wan_keys.transformer_key_to_original(key) for key in keys]
    assert None not in originals and len(set(originals)) == len(keys)
    assert [wan_keys.transformer_key_to_diffusers(key) for key in originals] == keys
    assert "blocks.1.cross_attn.norm_k_img.weight" in originals and "head.modulation" in originals


def test_vae_names_agree_with_diffusers_converter_on_the_release_vae():
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    with torch.device("meta"):
        keys = list(AutoencoderKLWan().state_dict())
    originals = {wan_keys.vae_key_to_original(key): key for key in keys}
    assert None not in originals and len(originals) == len(keys)
    assert set(convert_wan_vae_to_diffusers({key: torch.zeros(1) for key in originals})) == set(keys)
    assert all(wan_keys.vae_key_to_diffusers(original) == key for original, key in originals.items())


def test_t5_names_map_both_ways():
    from transformers import UMT5Config, UMT5EncoderModel

    model = UMT5EncoderModel(UMT5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4))
    originals = {wan_keys.t5_key_to_original(k): k for k in model.state_dict() if k != "encoder.embed_tokens.weight"}
    assert None not in originals
    assert all(wan_keys.t5_key_to_transformers(o) == k for o, k in originals.items())
    assert "blocks.1.pos_embedding.embedding.weight" in originals  # one relative-position table per layer


def test_full_casper_weights_replace_every_transformer_tensor(tiny_wan_release, tiny_wan_pipe):
    report = tiny_wan_pipe.load_report
    assert report.casper_format == "safetensors"
    assert report.overridden_keys == report.transformer_keys and not report.missing_keys
    casper = read_safetensors([tiny_wan_release.casper_weights])
    ours = tiny_wan_pipe.transformer.state_dict()
    for original in ("blocks.0.self_attn.q.weight", "img_emb.proj.1.weight", "head.modulation"):
        torch.testing.assert_close(ours[wan_keys.transformer_key_to_diffusers(original)], casper[original])


def test_lora_is_merged_as_the_reference_merges_it(tiny_wan_release):
    base = load_wan_casper_pipeline(tiny_wan_release.base_dir, None, dtype="fp32", device="cpu")
    merged = load_wan_casper_pipeline(tiny_wan_release.base_dir, tiny_wan_release.casper_lora, dtype="fp32",
                                      device="cpu", lora_scale=0.5)
    assert merged.load_report.casper_format == "lora" and merged.load_report.overridden_keys == 12
    lora = read_safetensors([tiny_wan_release.casper_lora])
    module = "lora_unet_blocks_1_ffn_0"
    up, down = lora[f"{module}.lora_up.weight"], lora[f"{module}.lora_down.weight"]
    alpha = float(lora[f"{module}.alpha"])
    expected = base.transformer.blocks[1].ffn.net[0].proj.weight + 0.5 * alpha / up.shape[1] * up @ down
    torch.testing.assert_close(merged.transformer.blocks[1].ffn.net[0].proj.weight, expected)
    untouched = merged.transformer.blocks[1].attn1.to_k.weight  # no LoRA module on it
    torch.testing.assert_close(untouched, base.transformer.blocks[1].attn1.to_k.weight)


def test_base_folder_checks_name_what_is_wrong(tiny_wan_release, tmp_path):
    files = check_wan_base_dir(tiny_wan_release.base_dir)
    assert files.vae.name == "Wan2.1_VAE.safetensors" and files.text_encoder.suffix == ".safetensors"
    broken = tmp_path / "broken"
    shutil.copytree(tiny_wan_release.base_dir, broken)
    (broken / "Wan2.1_VAE.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="Wan2.1_VAE.safetensors"):
        check_wan_base_dir(broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "in_dim": 16}))
    with pytest.raises(ValueError, match="36-channel inpaint"):
        check_wan_base_dir(broken)


def _converter():
    """tools/convert_wan_release.py, loaded from its file (sys.path untouched)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "convert_wan_release", Path(__file__).parents[2] / "tools" / "convert_wan_release.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_release_pth_files_are_refused_until_converted_to_safetensors(tiny_wan_release, tmp_path):
    """The pack never unpickles: a folder as released (.pth VAE and text encoder) is refused with the one-time
    conversion command; after it, the same tensors load."""
    from safetensors.torch import load_file

    released = tmp_path / "released"
    shutil.copytree(tiny_wan_release.base_dir, released)
    originals = {}
    for stem in ("Wan2.1_VAE", "models_t5_umt5-xxl-enc-bf16"):
        originals[stem] = load_file(str(released / f"{stem}.safetensors"))
        torch.save(originals[stem], released / f"{stem}.pth")
        (released / f"{stem}.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="convert_wan_release.py"):
        check_wan_base_dir(released)
    written = _converter().convert(released)
    assert sorted(p.name for p in written) == ["Wan2.1_VAE.safetensors", "models_t5_umt5-xxl-enc-bf16.safetensors"]
    for stem, state in originals.items():
        converted = read_release_weights(released / f"{stem}.safetensors")
        assert converted.keys() == state.keys() and all(torch.equal(converted[k], state[k]) for k in state)
    assert _converter().convert(released) == []  # nothing overwritten on a second run


def test_converter_refuses_pickles_that_hold_more_than_tensors(tmp_path):
    torch.save({"weight": torch.zeros(2), "extra": slice(1, 2, 3)}, tmp_path / "Wan2.1_VAE.pth")
    with pytest.raises(ValueError, match="Wan2.1_VAE.pth"):
        _converter().convert(tmp_path)
    assert not (tmp_path / "Wan2.1_VAE.safetensors").exists()


def test_window_plan_keeps_every_window_full_length():
    assert plan_full_windows(8, 21, 4) == [(0, 8)]
    assert plan_full_windows(8, 3, 1) == [(0, 3), (2, 5), (4, 7), (5, 8)]
    assert plan_full_windows(50, 21, 4) == [(0, 21), (17, 38), (29, 50)]
    assert all(end - begin == 21 for begin, end in plan_full_windows(50, 21, 4))
    torch.testing.assert_close(window_weights(29, 50, 50, 4)[:5], torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0]))


def test_mask_channels_carry_four_frames_each(tiny_wan_pipe):
    frames = 9  # 3 latent frames
    trimask = torch.full((1, 1, frames, 16, 16), NEUTRAL_VALUE)
    trimask[:, :, 0] = 1.0   # frame 0 removed
    trimask[:, :, 5] = 0.0   # frame 5 kept: latent frame 2, channel 0 (frames 5..8)
    latents = tiny_wan_pipe.mask_latents(trimask, 3, (2, 2))
    assert latents.shape == (1, 4, 3, 2, 2)
    assert torch.all(latents[0, :, 0] == 0)                       # 1 − remove, all four channels
    torch.testing.assert_close(latents[0, :, 1], torch.full((4, 2, 2), 1 - NEUTRAL_VALUE))
    torch.testing.assert_close(latents[0, 0, 2], torch.ones(2, 2))  # 1 − keep
    torch.testing.assert_close(latents[0, 1:, 2], torch.full((3, 2, 2), 1 - NEUTRAL_VALUE))


def _inputs(frames=9, height=32, width=48):
    g = torch.Generator().manual_seed(3)
    video = torch.rand(frames, height, width, 3, generator=g)
    trimasks = torch.full((2, frames, height, width), 0.5)
    trimasks[:, :, 4:12, 4:20] = 1.0
    trimasks[1, :, 16:, 24:] = 0.0
    return video, trimasks


def test_pipeline_is_deterministic_and_independent_of_batching(tiny_wan_pipe):
    video, trimasks = _inputs()
    first = tiny_wan_pipe(video, trimasks, steps=2, window_frames=9, overlap_frames=4)
    assert isinstance(tiny_wan_pipe, WanCasperPipeline) and first.names == ["job_0", "job_1"]
    assert first.videos.shape == (2, 9, 32, 48, 3) and 0 <= first.videos.min() and first.videos.max() <= 1
    again = tiny_wan_pipe(video, trimasks, steps=2, window_frames=9, overlap_frames=4, batch_size=1)
    torch.testing.assert_close(again.videos, first.videos, rtol=0, atol=1e-5)
    assert (first.videos[0] - first.videos[1]).abs().max() > 1e-3  # the two trimasks give different results


def test_pipeline_pads_crops_resizes_and_reports_progress(tiny_wan_pipe):
    video, trimasks = _inputs(frames=14, height=24, width=40)
    calls = []
    result = tiny_wan_pipe(video, trimasks[:1], steps=2, window_frames=9, overlap_frames=4, height=32, width=48,
                           live_progress=lambda done, total, preview: calls.append((done, total, preview)))
    assert result.videos.shape == (1, 14, 24, 40, 3)
    assert [c[0] for c in calls] == [1, 2, 3] and all(c[1] == 3 for c in calls)
    assert calls[0][2].shape == (32, 48, 3) and calls[-1][2] is None


def test_interrupt_from_progress_stops_the_run(tiny_wan_pipe):
    video, trimasks = _inputs()

    def stop(step, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tiny_wan_pipe(video, trimasks, steps=3, window_frames=9, overlap_frames=4, progress=stop)


@pytest.mark.parametrize("kwargs, message", [
    ({"window_frames": 80}, "window_frames"),
    ({"steps": 0}, "steps"),
    ({"height": 20, "width": 48}, "height"),
    ({"guidance_scale": 0.5}, "guidance_scale"),
])
def test_bad_arguments_are_named(tiny_wan_pipe, kwargs, message):
    video, trimasks = _inputs()
    with pytest.raises(ValueError, match=message):
        tiny_wan_pipe(video, trimasks, **kwargs)


def test_model_cpu_offload_gives_the_same_result(tiny_wan_release, tiny_wan_pipe):
    offloaded = load_wan_casper_pipeline(tiny_wan_release.base_dir, tiny_wan_release.casper_weights, dtype="fp32",
                                         device="cpu", memory_mode="model_cpu_offload")
    video, trimasks = _inputs()
    options = {"steps": 2, "window_frames": 9, "overlap_frames": 4}
    torch.testing.assert_close(offloaded(video, trimasks, **options).videos,
                               tiny_wan_pipe(video, trimasks, **options).videos, rtol=0, atol=1e-5)
    assert offloaded.memory_plan.offloader.log[:2] == ["text_encoder", "vae"]
