"""Loading Casper from tiny checkpoints written in the exact release folder format."""
import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from casper_core import release_format, testing
from casper_core.attention import SDPAKernelAttnProcessor
from casper_core.loading import load_casper_components, resolve_dtype
from torch.nn.attention import SDPBackend


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return testing.write_tiny_release(tmp_path_factory.mktemp("release"), seed=0)


def _load(release, casper=..., **kwargs):
    casper = release.casper_weights if casper is ... else casper
    kwargs.setdefault("dtype", "fp32")
    kwargs.setdefault("device", "cpu")
    return load_casper_components(release.base_dir, casper, **kwargs)


def _copy_base(release, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(release.base_dir, base)
    return base


def test_release_folder_has_the_release_files(release):
    base = release.base_dir
    for relative in (
        "transformer/config.json",
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/spiece.model",
        "tokenizer/tokenizer_config.json",
        "scheduler/scheduler_config.json",
    ):
        assert (base / relative).is_file(), relative
    transformer_config = json.loads((base / "transformer/config.json").read_text())
    assert transformer_config["add_noise_in_inpaint_model"] is True
    assert (transformer_config["in_channels"], transformer_config["out_channels"]) == (33, 16)
    assert (transformer_config["patch_size"], transformer_config["patch_size_t"]) == (2, 2)
    assert set(transformer_config) == set(release_format.RELEASE_TRANSFORMER_CONFIG)
    scheduler = json.loads((base / "scheduler/scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction" and scheduler["rescale_betas_zero_snr"] is True
    assert scheduler["timestep_spacing"] == "trailing" and scheduler["beta_schedule"] == "scaled_linear"


def test_tokenizer_loads_with_transformers_and_appends_eos(release):
    from transformers import AutoTokenizer, T5TokenizerFast

    for tokenizer in (
        AutoTokenizer.from_pretrained(release.base_dir / "tokenizer"),
        T5TokenizerFast.from_pretrained(release.base_dir / "tokenizer"),
    ):
        ids = tokenizer("an empty scene", padding="max_length", max_length=12, truncation=True).input_ids
        assert len(ids) == 12
        assert tokenizer.eos_token_id == 1 and tokenizer.pad_token_id == 0
        first_pad = ids.index(0)
        assert ids[first_pad - 1] == 1 and first_pad > 2  # real word pieces, then eos, then padding
        assert tokenizer.unk_token_id not in ids[: first_pad - 1]


def test_casper_weights_replace_the_base_transformer(release):
    parts = _load(release)
    casper = load_file(release.casper_weights)
    base = load_file(release.base_dir / "transformer/diffusion_pytorch_model.safetensors")
    state = parts.transformer.state_dict()
    assert set(state) == set(casper)
    for key, value in state.items():
        assert torch.equal(value, casper[key]), key
    differs = [key for key in state if not torch.equal(state[key], base[key])]
    assert len(differs) == len(state)  # every tensor really came from the Casper file
    assert parts.report.overridden_keys == len(state)
    assert parts.report.missing_keys == [] and parts.report.unexpected_keys == []
    assert parts.report.add_noise_in_inpaint_model is True
    vae_file = load_file(release.base_dir / "vae/diffusion_pytorch_model.safetensors")
    assert all(torch.equal(v, vae_file[k]) for k, v in parts.vae.state_dict().items())
    assert not parts.transformer.training and not parts.vae.training and not parts.text_encoder.training


def test_without_casper_weights_the_base_transformer_is_used(release):
    parts = _load(release, casper=None)
    base = load_file(release.base_dir / "transformer/diffusion_pytorch_model.safetensors")
    assert all(torch.equal(v, base[k]) for k, v in parts.transformer.state_dict().items())
    assert parts.report.casper_format is None


def test_missing_and_unexpected_keys_are_reported(release, tmp_path, caplog):
    casper = load_file(release.casper_weights)
    dropped = sorted(k for k in casper if k.startswith("transformer_blocks.1.ff."))
    assert dropped
    partial = {k: v for k, v in casper.items() if k not in dropped}
    partial["extra_head.weight"] = torch.zeros(3)
    path = tmp_path / "partial.safetensors"
    save_file(partial, str(path))
    with caplog.at_level(logging.WARNING, logger="casper_core.loading"):
        parts = _load(release, casper=path)
    assert parts.report.missing_keys == dropped
    assert parts.report.unexpected_keys == ["extra_head.weight"]
    assert "missing" in caplog.text and "extra_head.weight" in caplog.text
    base = load_file(release.base_dir / "transformer/diffusion_pytorch_model.safetensors")
    state = parts.transformer.state_dict()
    for key in dropped:  # the base weights stay where the Casper file has none
        assert torch.equal(state[key], base[key])
    kept = "transformer_blocks.0.attn1.to_q.weight"
    assert torch.equal(state[kept], casper[kept])


def test_wrapper_prefix_is_stripped(release, tmp_path):
    casper = load_file(release.casper_weights)
    path = tmp_path / "wrapped.safetensors"
    save_file({"module." + k: v for k, v in casper.items()}, str(path))
    parts = _load(release, casper=path)
    assert parts.report.stripped_prefix == "module."
    assert parts.report.missing_keys == [] and parts.report.unexpected_keys == []
    key = "proj_out.weight"
    assert torch.equal(parts.transformer.state_dict()[key], casper[key])


def test_shape_mismatch_names_the_tensor_and_both_shapes(release, tmp_path):
    casper = load_file(release.casper_weights)
    key = "patch_embed.proj.weight"
    shape = tuple(casper[key].shape)
    casper[key] = torch.zeros(shape[0], shape[1] // 2)  # e.g. a 16-channel (non-inpaint) checkpoint
    path = tmp_path / "wrong.safetensors"
    save_file(casper, str(path))
    with pytest.raises(ValueError, match="patch_embed.proj.weight") as info:
        _load(release, casper=path)
    assert str(shape) in str(info.value) and str((shape[0], shape[1] // 2)) in str(info.value)


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".ckpt"])
def test_pickled_casper_weights_are_refused_unread(release, tmp_path, suffix):
    marker = tmp_path / "unpickled"
    path = tmp_path / f"casper{suffix}"

    class Trap:  # unpickling this would create `marker`
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import pickle

    path.write_bytes(pickle.dumps(Trap()))
    with pytest.raises(ValueError, match="safetensors"):
        _load(release, casper=path)
    assert not marker.exists()


def test_base_folder_with_pickled_weights_only_is_refused(release, tmp_path):
    base = _copy_base(release, tmp_path)
    (base / "text_encoder/model.safetensors").unlink()
    (base / "text_encoder/pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        load_casper_components(base, None, dtype="fp32", device="cpu")


def test_missing_folders_and_files_are_named(release, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_casper_components(tmp_path / "nowhere", None, device="cpu")
    base = _copy_base(release, tmp_path)
    shutil.rmtree(base / "vae")
    with pytest.raises(FileNotFoundError, match=r"vae/"):
        load_casper_components(base, None, device="cpu")
    base = _copy_base(release, tmp_path / "b")
    (base / "transformer/diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        load_casper_components(base, None, device="cpu")
    (base / "scheduler/scheduler_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="scheduler_config.json"):
        load_casper_components(base, None, device="cpu")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        _load(release, casper=tmp_path / "missing.safetensors")


def test_sharded_weights_with_an_index_load(release, tmp_path):
    base = _copy_base(release, tmp_path)
    folder = base / "transformer"
    state = load_file(folder / "diffusion_pytorch_model.safetensors")
    keys = sorted(state)
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "diffusion_pytorch_model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for name, shard_keys in shards.items():
        save_file({k: state[k] for k in shard_keys}, str(folder / name))
    index = {"metadata": {}, "weight_map": {k: name for name, ks in shards.items() for k in ks}}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    parts = load_casper_components(base, None, dtype="fp32", device="cpu")
    assert all(torch.equal(v, state[k]) for k, v in parts.transformer.state_dict().items())


def test_casper_as_diffusers_transformer_folder(release, tmp_path):
    config = json.loads((release.base_dir / "transformer/config.json").read_text())
    folder = testing.write_transformer_folder(tmp_path / "casper_transformer", config, seed=7)
    parts = _load(release, casper=folder)
    expected = load_file(folder / "diffusion_pytorch_model.safetensors")
    assert parts.report.casper_format == "diffusers_folder"
    assert all(torch.equal(v, expected[k]) for k, v in parts.transformer.state_dict().items())


def test_dtype_choices(release):
    assert resolve_dtype("bf16") == torch.bfloat16 and resolve_dtype("fp32") == torch.float32
    bf16 = _load(release, dtype="bf16")
    for module in (bf16.transformer, bf16.vae, bf16.text_encoder):
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    with pytest.warns(UserWarning, match="NaN"):
        fp16 = _load(release, dtype="fp16")
    assert fp16.report.dtype == torch.bfloat16
    assert {p.dtype for p in fp16.transformer.parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError, match="dtype"):
        _load(release, dtype="int8")


def test_bad_arguments_fail_before_loading(release):
    with pytest.raises(ValueError, match="memory_mode"):
        _load(release, memory_mode="everything_on_disk")
    with pytest.raises(ValueError, match="attention_backend"):
        _load(release, attention_backend="xformers")
    with pytest.raises(ValueError, match="CUDA"):
        _load(release, attention_backend="sdpa_cudnn")


def _transformer_inputs(config, seed=0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(1, 2, 33, 4, 6, generator=generator)
    text = torch.randn(1, 5, config.text_embed_dim, generator=generator)
    return dict(hidden_states=hidden, encoder_hidden_states=text, timestep=torch.tensor([500]), return_dict=False)


def test_attention_backend_reaches_the_attention_call(release, caplog):
    parts = _load(release, attention_backend="sdpa_math")
    processor = parts.transformer.transformer_blocks[0].attn1.processor
    assert isinstance(processor, SDPAKernelAttnProcessor) and processor.kernels == [SDPBackend.MATH]
    inputs = _transformer_inputs(parts.transformer.config)
    with torch.no_grad():
        math_out = parts.transformer(**inputs)[0]
        parts.transformer.set_attn_processor(SDPAKernelAttnProcessor([SDPBackend.CUDNN_ATTENTION]))
        # cuDNN attention does not exist on the CPU: the call fails only if the choice reaches SDPA.
        with pytest.raises(RuntimeError, match="No (available kernel|viable backend)"):
            parts.transformer(**inputs)
        default = _load(release, attention_backend="auto")
        auto_out = default.transformer(**inputs)[0]
    torch.testing.assert_close(math_out, auto_out, rtol=1e-5, atol=1e-5)
    assert "not expected by" not in caplog.text  # no argument (e.g. the rotary embedding) was dropped


def test_sdpa_kernel_processor_keeps_the_rotary_embedding(release):
    parts = _load(release, casper=None)
    inputs = _transformer_inputs(parts.transformer.config)
    with torch.no_grad():
        default = parts.transformer(**inputs)[0]
        parts.transformer.set_attn_processor(SDPAKernelAttnProcessor([SDPBackend.MATH]))
        kernel = parts.transformer(**inputs)[0]
    torch.testing.assert_close(kernel, default, rtol=1e-5, atol=1e-5)


def test_fused_qkv_projections_compute_the_same(release):
    from casper_core.attention import set_attention_backend

    parts = _load(release, casper=None)
    inputs = _transformer_inputs(parts.transformer.config)
    with torch.no_grad():
        separate = parts.transformer(**inputs)[0]
        set_attention_backend(parts.transformer, "sdpa_math", "cpu", fuse_qkv=True)
        attn = parts.transformer.transformer_blocks[0].attn1
        assert hasattr(attn, "to_qkv") and not hasattr(attn, "to_q")  # separate matrices released
        assert parts.transformer.transformer_blocks[0].attn1.processor.fused
        fused = parts.transformer(**inputs)[0]
    torch.testing.assert_close(fused, separate, rtol=1e-5, atol=1e-5)


def test_a_non_inpaint_base_model_is_refused(release, tmp_path):
    base = _copy_base(release, tmp_path)
    config_path = base / "transformer" / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "in_channels": 16}))
    with pytest.raises(ValueError, match="in_channels is 16"):
        load_casper_components(base, None, device="cpu")


def _tiny_video_and_masks(frames=9, height=32, width=48):
    generator = torch.Generator().manual_seed(5)
    video = torch.rand(frames, height, width, 3, generator=generator)  # [T,H,W,3] in 0..1
    masks = torch.zeros(2, frames, height, width)
    masks[0, :, 4:20, 4:20] = 1
    masks[1, :, 12:28, 24:44] = 1
    return video, masks


@pytest.fixture(scope="module")
def gpu_mode_result(release):
    pytest.importorskip("casper_core.pipeline")
    from casper_core import build_trimask_jobs
    from casper_core.loading import load_casper_pipeline

    pipeline = load_casper_pipeline(release.base_dir, release.casper_weights, dtype="fp32", device="cpu")
    video, masks = _tiny_video_and_masks()
    jobs = build_trimask_jobs(video, masks)
    return pipeline(video, jobs, steps=1, seed=0), jobs


def test_pipeline_loaded_from_release_files_runs(release, gpu_mode_result):
    result, jobs = gpu_mode_result
    video, _ = _tiny_video_and_masks()
    assert list(result.names) == list(jobs.names) == ["background", "solo_0", "solo_1"]
    assert result.videos.shape == (3, *video.shape)
    assert torch.isfinite(result.videos).all()
    assert result.videos.min() >= 0 and result.videos.max() <= 1


@pytest.mark.parametrize("mode", ["model_cpu_offload", "group_offload"])
def test_pipeline_output_does_not_depend_on_the_offload_mode(release, gpu_mode_result, mode):
    from casper_core import CasperPipeline, build_trimask_jobs

    pipeline = CasperPipeline.from_pretrained(
        release.base_dir, release.casper_weights, dtype="fp32", device="cpu", memory_mode=mode
    )
    assert pipeline.load_report.memory_mode == mode
    video, masks = _tiny_video_and_masks()
    result = pipeline(video, build_trimask_jobs(video, masks), steps=1, seed=0)
    torch.testing.assert_close(result.videos, gpu_mode_result[0].videos, rtol=1e-5, atol=1e-5)


def test_importing_casper_core_needs_neither_diffusers_nor_transformers():
    import subprocess
    import sys

    code = (
        "import sys, casper_core, casper_core.loading, casper_core.memory, casper_core.attention, "
        "casper_core.release_format, casper_core.removal, casper_core.testing\n"
        "print(sorted(m for m in ('diffusers', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_casper_weights_that_match_too_little_are_refused_unless_partial_is_allowed(release, tmp_path):
    casper = load_file(release.casper_weights)
    # keys under another naming (a ComfyUI-style prefix that is not a plain wrapper): nothing matches
    renamed = tmp_path / "other_names.safetensors"
    save_file({"diffusion_model." + k: v for k, v in casper.items()}, str(renamed))
    with pytest.raises(ValueError, match=r"replaces only 0 of the transformer's 64 tensors \(0%; at least 90%") as info:
        _load(release, casper=renamed)
    message = str(info.value)
    assert str(renamed) in message
    assert "diffusion_model.norm_final.bias" in message  # a key of the file …
    assert "norm_final.bias" in message.split("model keys the file lacks:")[1]  # … and one of the model
    assert "allow_partial=True" in message
    # a file with a few of the tensors: refused, unless allow_partial=True, which keeps the base values for the rest
    few = sorted(casper)[:10]
    partial = tmp_path / "partial.safetensors"
    save_file({k: casper[k] for k in few}, str(partial))
    with pytest.raises(ValueError, match=r"partial\.safetensors: replaces only 10 of the transformer's 64 tensors"):
        _load(release, casper=partial)
    parts = _load(release, casper=partial, allow_partial=True)
    assert parts.report.overridden_keys == 10 and parts.report.transformer_keys == 64
    base = load_file(release.base_dir / "transformer/diffusion_pytorch_model.safetensors")
    state = parts.transformer.state_dict()
    assert all(torch.equal(state[k], casper[k]) for k in few)
    assert all(torch.equal(state[k], base[k]) for k in state if k not in few)


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_corrupt_or_truncated_safetensors_are_named(release, tmp_path):
    from casper_core.loading import check_casper_weights

    truncated = tmp_path / "truncated.safetensors"
    shutil.copy(release.casper_weights, truncated)
    _truncate(truncated)
    for call in (lambda: check_casper_weights(truncated), lambda: _load(release, casper=truncated)):
        with pytest.raises(ValueError, match=r"casper_weights .*truncated\.safetensors is not a readable \.safetensors "
                                             r"file .*download it again"):
            call()
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"<html>404 Not Found</html>" * 10)
    with pytest.raises(ValueError, match=r"garbage\.safetensors is not a readable"):
        _load(release, casper=garbage)
    # a base model file (here the text encoder, which transformers would read) is named too, before any loading
    base = _copy_base(release, tmp_path)
    _truncate(base / "text_encoder/model.safetensors", keep=0.9)
    with pytest.raises(ValueError, match=r"text_encoder.model\.safetensors is not a readable"):
        load_casper_components(base, None, dtype="fp32", device="cpu")
