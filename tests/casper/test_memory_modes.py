"""Memory modes on the CPU: each is selectable, places/hooks what it says, and computes what "gpu" computes."""
import pytest
import torch
from torch.overrides import TorchFunctionMode

from casper_core import testing
from casper_core.loading import load_casper_components
from casper_core.memory import FP8_STORAGE_DTYPE, MEMORY_MODES


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return testing.write_tiny_release(tmp_path_factory.mktemp("release"), seed=3)


def _load(release, memory_mode, dtype="fp32", **kwargs):
    return load_casper_components(
        release.base_dir, release.casper_weights, dtype=dtype, memory_mode=memory_mode, device="cpu", **kwargs
    )


def _run_chain(parts, seed=0):
    """The pipeline's order of use in miniature: T5 → VAE encode → transformer → VAE decode."""
    device = parts.memory.execution_device
    dtype = parts.report.dtype
    generator = torch.Generator().manual_seed(seed)
    ids = parts.tokenizer(["empty scene"], padding="max_length", max_length=16, return_tensors="pt").input_ids
    video = torch.rand(1, 3, 5, 32, 48, generator=generator) * 2 - 1  # [B,C,T,H,W] in -1..1
    noise = torch.randn(1, 2, 16, 4, 6, generator=generator)
    with torch.no_grad():
        text = parts.text_encoder(ids.to(device))[0]
        latents = parts.vae.encode(video.to(device, dtype)).latent_dist.mode() * 0.7  # [1,16,2,4,6]
        latents = latents.permute(0, 2, 1, 3, 4)
        mask = torch.full_like(latents[:, :, :1], 0.35)
        hidden = torch.cat([noise.to(device, dtype), mask, latents], dim=2)
        prediction = parts.transformer(
            hidden_states=hidden, encoder_hidden_states=text, timestep=torch.tensor([999], device=device),
            return_dict=False,
        )[0]
        frames = parts.vae.decode(prediction.permute(0, 2, 1, 3, 4) / 0.7).sample
    parts.memory.release()
    return {"text": text.float().cpu(), "latents": latents.float().cpu(), "prediction": prediction.float().cpu(),
            "frames": frames.float().cpu()}


@pytest.fixture(scope="module")
def gpu_mode_outputs(release):
    return _run_chain(_load(release, "gpu"))


def test_every_mode_is_selectable_and_known():
    assert set(MEMORY_MODES) == {
        "gpu", "fp8_storage", "model_cpu_offload", "fp8_model_cpu_offload", "group_offload", "sequential_offload"
    }


@pytest.mark.parametrize("mode", ["model_cpu_offload", "group_offload", "sequential_offload"])
def test_offload_modes_compute_what_gpu_mode_computes(release, gpu_mode_outputs, mode):
    parts = _load(release, mode)
    outputs = _run_chain(parts)
    for name, expected in gpu_mode_outputs.items():
        torch.testing.assert_close(outputs[name], expected, rtol=1e-6, atol=1e-6, msg=f"{mode}: {name}")


def test_model_cpu_offload_moves_components_in_order_of_use(release):
    parts = _load(release, "model_cpu_offload")
    offloader = parts.memory.offloader
    assert offloader is not None and offloader.resident is None and offloader.log == []
    _run_chain(parts)
    # T5, then the VAE (encode), the transformer, and the VAE again (decode); one resident at a time.
    assert offloader.log == ["text_encoder", "vae", "transformer", "vae"]
    assert offloader.resident is None  # released after the run


def test_group_offload_uploads_block_by_block(release):
    parts = _load(release, "group_offload")
    offloaders = parts.memory.group_offloaders
    assert set(offloaders) == {"text_encoder", "vae", "transformer"}
    transformer = offloaders["transformer"]
    assert transformer.groups == [f"transformer_blocks.{i}" for i in range(len(parts.transformer.transformer_blocks))]
    assert offloaders["text_encoder"].groups == [f"encoder.block.{i}" for i in range(2)]
    _run_chain(parts)
    assert transformer.uploads == len(transformer.groups)  # each block uploaded once for one forward
    assert all(state == "cpu" for state in transformer._state)  # and dropped again after its forward


def test_sequential_offload_groups_every_layer(release):
    parts = _load(release, "sequential_offload")
    offloader = parts.memory.group_offloaders["transformer"]
    owners = {name for name, m in parts.transformer.named_modules() if any(True for _ in m.parameters(recurse=False))}
    assert set(offloader.groups) == owners
    grouped = sum(len(pairs) for pairs in offloader._tensors)
    assert grouped == len(list(parts.transformer.parameters()))  # nothing left permanently on the device


def _fp8_rounded_reference(release, dtype, fp8_modules):
    """The "gpu" mode model with the weights of `fp8_modules` rounded through float8 by hand."""
    parts = _load(release, "gpu", dtype=dtype)
    modules = dict(parts.transformer.named_modules())
    with torch.no_grad():
        for name in fp8_modules:
            for param in modules[name].parameters(recurse=False):
                param.copy_(param.to(FP8_STORAGE_DTYPE).to(param.dtype))
    return parts


@pytest.mark.parametrize("mode", ["fp8_storage", "fp8_model_cpu_offload"])
def test_fp8_storage_equals_fp8_rounded_weights(release, mode):
    parts = _load(release, mode)
    blocks = len(parts.transformer.transformer_blocks)
    fp8_in_blocks = [name for name in parts.memory.fp8_modules if name.startswith("transformer_blocks.")]
    assert len(fp8_in_blocks) >= 6 * blocks  # q, k, v, out, and the two feed-forward matrices of every block
    block_linear = parts.transformer.transformer_blocks[0].attn1.to_q
    assert block_linear.weight.dtype == FP8_STORAGE_DTYPE
    assert parts.transformer.patch_embed.proj.weight.dtype == torch.float32  # kept in the compute dtype
    outputs = _run_chain(parts)
    reference = _run_chain(_fp8_rounded_reference(release, "fp32", parts.memory.fp8_modules))
    torch.testing.assert_close(outputs["prediction"], reference["prediction"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(outputs["frames"], reference["frames"], rtol=1e-5, atol=5e-5)  # decode amplifies ulps


class _LinearWeightDtypes(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.dtypes = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.linear:
            self.dtypes.add(args[1].dtype)
        return func(*args, **(kwargs or {}))


def test_fp8_storage_computes_in_bf16(release):
    parts = _load(release, "fp8_storage", dtype="bf16")
    stored = {p.dtype for p in parts.transformer.transformer_blocks.parameters()}
    assert FP8_STORAGE_DTYPE in stored
    inputs = dict(
        hidden_states=torch.randn(1, 2, 33, 4, 6, dtype=torch.bfloat16),
        encoder_hidden_states=torch.randn(1, 5, parts.transformer.config.text_embed_dim, dtype=torch.bfloat16),
        timestep=torch.tensor([500]),
        return_dict=False,
    )
    with torch.no_grad(), _LinearWeightDtypes() as seen:
        output = parts.transformer(**inputs)[0]
    assert seen.dtypes == {torch.bfloat16}  # every matrix product ran on bf16 weights
    assert output.dtype == torch.bfloat16 and torch.isfinite(output).all()
    assert parts.transformer.transformer_blocks[0].ff.net[0].proj.weight.dtype == FP8_STORAGE_DTYPE  # cast back


def test_fp8_storage_halves_attention_and_feed_forward_bytes(release):
    # attention and feed-forward matrices are ~85 % of the real transformer's 5.6 B parameters
    bf16 = _load(release, "gpu", dtype="bf16").transformer
    fp8 = _load(release, "fp8_storage", dtype="bf16").transformer

    def bulk_bytes(model):
        return sum(
            p.numel() * p.element_size()
            for block in model.transformer_blocks
            for part in (block.attn1, block.ff)
            for layer in part.modules()
            if isinstance(layer, torch.nn.Linear)
            for p in layer.parameters()
        )

    assert bulk_bytes(fp8) * 2 == bulk_bytes(bf16)


@pytest.mark.parametrize("tiling", [True, False])
def test_vae_tiling_switch(release, tiling):
    parts = _load(release, "gpu", vae_tiling=tiling)
    assert parts.vae.use_tiling is tiling and parts.vae.use_slicing is tiling


@pytest.mark.parametrize("pin", [False, True])
def test_cpu_copies_keep_values_dtypes_and_shapes(pin, monkeypatch):
    from casper_core import memory
    from casper_core.memory import _cpu_copies

    buffers = []

    def allocate(nbytes):  # a pageable stand-in for pinned memory, so the packing runs without CUDA
        buffers.append(torch.empty(nbytes, dtype=torch.uint8))
        return buffers[-1]

    monkeypatch.setattr(memory, "_PIN_CHUNK_BYTES", 128)  # force several chunks and one oversize tensor

    generator = torch.Generator().manual_seed(0)
    tensors = [
        torch.randn(3, 5, generator=generator),
        torch.randn(7, generator=generator).to(FP8_STORAGE_DTYPE),  # odd byte count: the next must stay aligned
        torch.randn(2, 3, generator=generator).to(torch.bfloat16),
        torch.arange(4),
        torch.randn(40, generator=generator),  # 160 bytes > the 128-byte chunk: its own buffer
    ]
    copies = _cpu_copies(tensors, pin, allocate=allocate)
    for original, copy in zip(tensors, copies):
        assert copy.dtype == original.dtype and copy.shape == original.shape
        assert torch.equal(copy.view(torch.uint8), original.view(torch.uint8))
        assert copy.data_ptr() != original.data_ptr() or not pin
    if pin:
        assert 2 <= len(buffers) < len(tensors)  # packed: fewer allocations than tensors
        assert all(copy.data_ptr() % 64 == 0 for copy in copies)


# Calls that read no weight values: attribute access (incl. the offloaders' own `.data` swaps) and metadata queries
# such as diffusers' `ModelMixin.dtype`.
_METADATA_ONLY = {"__get__", "__set__", "is_floating_point", "is_complex", "dim", "size", "numel", "element_size",
                  "__len__", "__hash__"}


class _OffloadedWeightUse(TorchFunctionMode):
    """Records every op that reads a parameter while its offloader says it is not on the execution device.

    On the CPU an offloaded weight still computes correctly, so equal outputs alone would not show a weight used
    outside its group's forward; on a GPU that use would fail. This catches it on the CPU.
    """

    def __init__(self, is_offloaded):
        super().__init__()
        self.is_offloaded = is_offloaded
        self.violations = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in _METADATA_ONLY:
            return func(*args, **kwargs)
        for value in (*args, *kwargs.values()):
            if isinstance(value, torch.nn.Parameter) and self.is_offloaded(value):
                self.violations.append(getattr(func, "__name__", str(func)))
        return func(*args, **kwargs)


@pytest.mark.parametrize("mode", ["group_offload", "sequential_offload"])
def test_group_offload_uses_no_weight_while_it_is_offloaded(release, mode):
    parts = _load(release, mode)
    where = {}
    for offloader in parts.memory.group_offloaders.values():
        for index, pairs in enumerate(offloader._tensors):
            for tensor, _ in pairs:
                where[id(tensor)] = (offloader, index)

    def is_offloaded(param):
        if id(param) not in where:
            return False  # ungrouped: lives on the execution device
        offloader, index = where[id(param)]
        return offloader._state[index] != "resident"

    with _OffloadedWeightUse(is_offloaded) as watch:
        _run_chain(parts)
    assert watch.violations == []


def test_model_cpu_offload_uses_no_weight_of_a_component_that_is_not_resident(release):
    parts = _load(release, "model_cpu_offload")
    offloader = parts.memory.offloader
    owner = {id(t): name for name, pairs in offloader._cpu_tensors.items() for t, _ in pairs}

    with _OffloadedWeightUse(lambda p: id(p) in owner and offloader.resident != owner[id(p)]) as watch:
        _run_chain(parts)
    assert watch.violations == []


@pytest.mark.parametrize("mode", ["model_cpu_offload", "sequential_offload"])
def test_real_pipeline_uses_no_offloaded_weight(release, mode):
    pytest.importorskip("casper_core.pipeline")
    from casper_core import build_trimask_jobs
    from casper_core.loading import load_casper_pipeline

    pipeline = load_casper_pipeline(release.base_dir, release.casper_weights, dtype="fp32", device="cpu",
                                    memory_mode=mode)
    plan = pipeline.memory_plan
    if plan.offloader is not None:
        owner = {id(t): name for name, pairs in plan.offloader._cpu_tensors.items() for t, _ in pairs}

        def is_offloaded(param):
            return id(param) in owner and plan.offloader.resident != owner[id(param)]
    else:
        where = {id(t): (off, i) for off in plan.group_offloaders.values()
                 for i, pairs in enumerate(off._tensors) for t, _ in pairs}

        def is_offloaded(param):
            return id(param) in where and where[id(param)][0]._state[where[id(param)][1]] != "resident"

    generator = torch.Generator().manual_seed(0)
    video = torch.rand(5, 32, 48, 3, generator=generator)
    masks = torch.zeros(1, 5, 32, 48)
    masks[0, :, 8:24, 8:24] = 1
    with _OffloadedWeightUse(is_offloaded) as watch:
        result = pipeline(video, build_trimask_jobs(video, masks), steps=1, window_frames=17, overlap_frames=8)
    assert watch.violations == []
    assert result.videos.shape == (1, 5, 32, 48, 3)
