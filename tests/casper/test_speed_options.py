"""Speed options (`casper_core.speed`, the ``sage`` attention backend) on the CPU: validation, clear refusals, and
the parts that run anywhere (the kernel-swappable attention processor, fp8 layers under every memory mode, the
per-block compile mechanism with Inductor replaced by dynamo's eager backend)."""
import functools
import importlib.util

import pytest
import torch
import torch.nn.functional as F

from casper_core import speed, testing
from casper_core.attention import CogVideoXKernelAttnProcessor, check_attention_backend, set_attention_backend
from casper_core.fp8_compute import Fp8RowwiseLinear
from casper_core.loading import load_casper_components
from casper_core.memory import MEMORY_MODES, apply_memory_mode


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return testing.write_tiny_release(tmp_path_factory.mktemp("release"), seed=0)


def _load(release, **kwargs):
    kwargs.setdefault("dtype", "fp32")
    kwargs.setdefault("device", "cpu")
    return load_casper_components(release.base_dir, release.casper_weights, **kwargs)


def _inputs(config, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(1, 2, 33, 4, 6, generator=generator).to(dtype),
        encoder_hidden_states=torch.randn(1, 5, config.text_embed_dim, generator=generator).to(dtype),
        timestep=torch.tensor([500]),
        return_dict=False,
    )


def _pretend_cuda(monkeypatch, capability=(9, 0), triton=True):
    """Stand in a CUDA GPU of `capability` for the checks (no CUDA call is made)."""
    monkeypatch.setattr(speed, "cuda_capability", lambda device: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *args: (object() if triton else None) if name == "triton" else real_find_spec(name, *args),
    )


# ---------------------------------------------------------------------------------------------------------------
# Validation and refusals


@pytest.mark.parametrize("option", ["compile", "fp8_compute"])
def test_options_must_be_booleans(option):
    kwargs = {"compile": False, "fp8_compute": False, option: "yes"}
    with pytest.raises(ValueError, match=f"{option} must be True or False, got 'yes'"):
        speed.check_speed_options(memory_mode="gpu", device="cpu", **kwargs)


def test_fp8_compute_on_cpu_is_refused_before_loading(release, monkeypatch):
    read = []
    monkeypatch.setattr("casper_core.loading.read_safetensors", lambda *a, **k: read.append(a) or {})
    with pytest.raises(ValueError, match=r"fp8_compute needs a CUDA GPU of compute capability ≥ 8\.9.*runs on cpu"):
        _load(release, fp8_compute=True)
    assert read == []  # refused before any weights were read


def test_compile_on_cpu_is_refused_clearly(release):
    with pytest.raises(ValueError, match=r"compile needs a CUDA GPU .*runs on cpu; turn compile off"):
        _load(release, compile=True)


def test_fp8_compute_needs_compute_capability_8_9(monkeypatch):
    _pretend_cuda(monkeypatch, capability=(8, 6))
    with pytest.raises(ValueError, match=r"≥ 8\.9.*Test GPU has 8\.6"):
        speed.check_speed_options(compile=False, fp8_compute=True, memory_mode="gpu", device="cuda")
    _pretend_cuda(monkeypatch, capability=(8, 9))
    speed.check_speed_options(compile=False, fp8_compute=True, memory_mode="gpu", device="cuda")


@pytest.mark.parametrize("memory_mode", MEMORY_MODES)
def test_compile_with_each_memory_mode(monkeypatch, memory_mode):
    _pretend_cuda(monkeypatch)
    check = functools.partial(speed.check_speed_options, compile=True, memory_mode=memory_mode, device="cuda")
    if memory_mode in ("sequential_offload", "fp8_storage", "fp8_model_cpu_offload"):
        with pytest.raises(ValueError, match=f"compile does not work with memory_mode '{memory_mode}'"):
            check(fp8_compute=False)
    else:
        check(fp8_compute=False)
        check(fp8_compute=True)


def test_fp8_compute_works_with_every_memory_mode_check(monkeypatch):
    _pretend_cuda(monkeypatch)
    for memory_mode in MEMORY_MODES:
        speed.check_speed_options(compile=False, fp8_compute=True, memory_mode=memory_mode, device="cuda")


def test_compile_without_triton_names_the_package(monkeypatch):
    _pretend_cuda(monkeypatch, triton=False)
    with pytest.raises(ImportError, match="'triton'"):
        speed.check_speed_options(compile=True, fp8_compute=False, memory_mode="gpu", device="cuda")


def test_sage_attention_is_refused_on_cpu(release):
    installed = importlib.util.find_spec("sageattention") is not None
    with pytest.raises(ValueError, match="'sage'.*only on CUDA GPUs, but the pipeline runs on cpu") as error:
        _load(release, attention_backend="sage")
    assert ("sageattention" in str(error.value)) != installed  # a missing package is named in the same message


def test_sage_attention_without_the_package_names_it(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sageattention" else real_find_spec(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # no capability query on this machine
    with pytest.raises(ImportError, match=r"sageattention.*not installed \(pip install sageattention"):
        check_attention_backend("sage", "cuda")


# ---------------------------------------------------------------------------------------------------------------
# What runs on the CPU


@pytest.mark.parametrize("fused", [False, True])
def test_kernel_processor_computes_what_diffusers_computes(release, fused):
    parts = _load(release)
    transformer = parts.transformer
    inputs = _inputs(transformer.config)
    set_attention_backend(transformer, "sdpa_math", "cpu", fuse_qkv=fused)
    calls = []

    def attention(query, key, value):
        calls.append(query.shape)
        return F.scaled_dot_product_attention(query, key, value)

    with torch.no_grad():
        expected = transformer(**inputs)[0]
        transformer.set_attn_processor(CogVideoXKernelAttnProcessor(attention))
        out = transformer(**inputs)[0]
    assert len(calls) == len(transformer.transformer_blocks)
    heads, head_dim = transformer.config.num_attention_heads, transformer.config.attention_head_dim
    assert calls[0] == (1, heads, 5 + 1 * 2 * 3, head_dim)  # 5 text tokens + 1 × 2 × 3 video patches
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("memory_mode", MEMORY_MODES)
def test_fp8_layers_run_under_every_memory_mode(release, memory_mode):
    reference = _load(release, dtype="bf16")
    set_attention_backend(reference.transformer, "auto", "cpu", fuse_qkv=True)
    speed.apply_speed_options(reference.transformer, compile=False, fp8_compute=True)
    inputs = _inputs(reference.transformer.config, torch.bfloat16)
    parts = _load(release, dtype="bf16")
    set_attention_backend(parts.transformer, "auto", "cpu", fuse_qkv=True)
    plan = speed.apply_speed_options(parts.transformer, compile=False, fp8_compute=True, quantize_device="cpu")
    assert plan.fp8_linears and all(name.endswith(("to_qkv", "to_out.0", "ff.net.0.proj", "ff.net.2"))
                                    for name in plan.fp8_linears)
    components = {"text_encoder": parts.text_encoder, "vae": parts.vae, "transformer": parts.transformer}
    apply_memory_mode(components, memory_mode, "cpu", torch.bfloat16)
    layer = parts.transformer.get_submodule(plan.fp8_linears[0])
    assert isinstance(layer, Fp8RowwiseLinear) and layer.weight_fp8.dtype == torch.float8_e4m3fn
    with torch.no_grad():
        expected = reference.transformer(**inputs)[0].float()
        out = parts.transformer(**inputs)[0].float()
    assert torch.isfinite(out).all()
    if memory_mode.startswith("fp8"):  # the other weights are rounded to fp8 storage as well
        assert (out - expected).norm() / expected.norm() < 0.1
    else:
        torch.testing.assert_close(out, expected)


def test_compile_blocks_shares_one_function_and_keeps_hooks_outside(release, monkeypatch):
    # Inductor needs a C++ or Triton toolchain; dynamo's eager backend checks the same mechanism on the CPU.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    parts = _load(release)
    transformer = parts.transformer
    inputs = _inputs(transformer.config)
    with torch.no_grad():
        expected = transformer(**inputs)[0]
    assert speed.compile_blocks(transformer) == len(transformer.transformer_blocks)
    functions = {block.forward.__func__ for block in transformer.transformer_blocks}
    assert len(functions) == 1 and next(iter(functions)) is not type(transformer.transformer_blocks[0]).forward
    speed.compile_blocks(transformer)  # a second call changes nothing
    assert {block.forward.__func__ for block in transformer.transformer_blocks} == functions
    hook_calls = []
    transformer.transformer_blocks[1].register_forward_pre_hook(lambda module, args: hook_calls.append(module))
    with torch.no_grad():
        out = transformer(**inputs)[0]
        transformer(**inputs)
    assert hook_calls == [transformer.transformer_blocks[1]] * 2
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


def test_sage_operator_reaches_the_package_and_compiles_as_one_node(monkeypatch):
    """The ``casper::sage_attention`` operator with a stand-in ``sageattention`` package (plain SDPA inside)."""
    import sys
    import types

    from casper_core.sage_attention import sage_attention

    calls = []

    def sageattn(q, k, v, tensor_layout="HND", is_causal=False, smooth_k=True):
        calls.append((tensor_layout, is_causal, smooth_k, k.mean(dim=2).abs().max().item()))
        return F.scaled_dot_product_attention(q, k, v)

    monkeypatch.setitem(sys.modules, "sageattention", types.SimpleNamespace(sageattn=sageattn))
    generator = torch.Generator().manual_seed(4)
    query, key, value = (torch.randn(1, 2, 7, 64, generator=generator) for _ in range(3))
    key = key + 3.0  # a large common offset: removed by the smoothing, which leaves softmax unchanged
    key_before = key.clone()
    out = sage_attention(query, key, value)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(query, key, value), rtol=1e-5, atol=1e-5)
    assert torch.equal(key, key_before)  # the input is not modified (the package would subtract in place)
    layout, causal, smooth, key_mean = calls[0]
    assert (layout, causal, smooth) == ("HND", False, False) and key_mean < 1e-5

    compiled = torch.compile(lambda q, k, v: sage_attention(q, k, v) * 2, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(query, key, value), 2 * out)
    with pytest.raises(ValueError, match="head_dim must be one of"):
        sage_attention(*(torch.randn(1, 1, 4, 32) for _ in range(3)))
