"""Speed options of the Casper transformer: per-block ``torch.compile`` and fp8 compute.

- ``compile``: each of the 42 transformer blocks runs a `torch.compile`d forward (Inductor, static shapes). The
  blocks share one compiled graph, so the first call compiles once (5 s in bf16, 13 s with ``fp8_compute`` on an
  H200: BENCHMARKS.md) and a new latent shape (another resolution, window length or batch) compiles once more.
  Compiled code is cached in memory for the life of the pipeline; Inductor also keeps its kernels on disk
  (``TORCHINDUCTOR_CACHE_DIR``, by default under the system's temporary folder) for later processes to reuse.
  Compiling only the block's ``forward`` keeps the memory modes' block hooks outside the compiled code. Needs a CUDA
  GPU and Triton.
- ``fp8_compute``: the attention and feed-forward matrices of every block (≈ 85 % of the FLOPs) become
  `casper_core.fp8_compute.Fp8RowwiseLinear`: fp8 weights with one scale per row, activations quantised per row at
  run time, products on fp8 tensor cores (``torch._scaled_mm``). This changes the arithmetic (fp8 rounding of both
  operands) and halves those weights' memory. Needs compute capability ≥ 8.9 (Ada, Hopper and newer); pays off with
  ``compile``, which fuses the activation quantisation into the neighbouring work.

Both options fuse each attention layer's q/k/v projections into one matrix product first (the same numbers, one
product instead of three and, with fp8, one activation quantisation instead of three).

Combinations with the memory modes (`casper_core.memory`): ``fp8_compute`` works with every mode (its fp8 weights
are moved and offloaded like any others; in the fp8 storage modes it replaces the storage cast of those matrices).
``compile`` works with ``gpu``, ``model_cpu_offload`` and ``group_offload``; it is refused with
``sequential_offload`` (that mode moves every layer's weights from inside the blocks, in hooks the compiled code
would have to trace) and with the fp8 *storage* modes (their per-layer weight casts create parameters inside the
blocks, which `torch.compile` cannot trace) — ``fp8_compute`` with ``gpu`` or ``model_cpu_offload`` gives the
same weight memory and is faster.
"""
from __future__ import annotations

import importlib.util
import types
from dataclasses import dataclass, field

import torch

from .fp8_compute import use_fp8_matmuls

# Memory modes whose hooks run inside the transformer blocks, so a compiled block would trace them.
COMPILE_UNSUPPORTED_MODES = {
    "sequential_offload": "it moves every layer's weights in hooks inside the blocks",
    "fp8_storage": "its per-layer fp8 → bf16 weight casts run inside the blocks and cannot be traced",
    "fp8_model_cpu_offload": "its per-layer fp8 → bf16 weight casts run inside the blocks and cannot be traced",
}
FP8_MIN_CAPABILITY = (8, 9)
# Room for one compiled graph per distinct input shape (resolutions, window lengths, batch sizes) before dynamo
# falls back to running the block uncompiled.
RECOMPILE_LIMIT = 16


@dataclass
class SpeedPlan:
    """What `apply_speed_options` set up.

    Attributes:
        compile: whether the transformer blocks run compiled forwards.
        fp8_compute: whether the block matrices compute in fp8.
        fp8_linears: names of the layers replaced by `Fp8RowwiseLinear`.
    """

    compile: bool = False
    fp8_compute: bool = False
    fp8_linears: list[str] = field(default_factory=list)


def check_speed_options(*, compile: bool, fp8_compute: bool, memory_mode: str, device) -> None:  # noqa: A002
    """Refuse options the device or memory mode cannot run, before any weights are read.

    Raises ValueError naming the option, what the device or mode lacks and what to choose instead, or ImportError
    when ``compile`` needs Triton and it is not installed.
    """
    for name, value in (("compile", compile), ("fp8_compute", fp8_compute)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    device = torch.device(device)
    if fp8_compute:
        if device.type != "cuda":
            raise ValueError(
                f"fp8_compute needs a CUDA GPU of compute capability ≥ 8.9 (Ada, Hopper or newer), but the pipeline "
                f"runs on {device}; turn fp8_compute off"
            )
        capability = cuda_capability(device)
        if capability < FP8_MIN_CAPABILITY:
            raise ValueError(
                f"fp8_compute needs a GPU of compute capability ≥ 8.9 (Ada, Hopper or newer) for fp8 tensor cores; "
                f"{torch.cuda.get_device_name(device)} has {capability[0]}.{capability[1]}. Turn fp8_compute off "
                "(memory_mode 'fp8_storage' still halves the weight memory there)"
            )
    if compile:
        if device.type != "cuda":
            raise ValueError(
                f"compile needs a CUDA GPU (Inductor's Triton kernels), but the pipeline runs on {device}; "
                "turn compile off"
            )
        if memory_mode in COMPILE_UNSUPPORTED_MODES:
            raise ValueError(
                f"compile does not work with memory_mode {memory_mode!r}: {COMPILE_UNSUPPORTED_MODES[memory_mode]}. "
                "Use compile with 'gpu', 'model_cpu_offload' or 'group_offload' (add fp8_compute for fp8 weights)"
            )
        if importlib.util.find_spec("triton") is None:
            raise ImportError("compile needs the 'triton' package (pip install triton), which is not installed; "
                              "turn compile off or install it")


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """The compute capability of a CUDA `device` (a function of its own so tests can stand in a GPU)."""
    return torch.cuda.get_device_capability(device)


def apply_fp8_compute(transformer: torch.nn.Module, quantize_device=None) -> list[str]:
    """Replace the block matrices of a CogVideoX transformer by fp8 row-wise layers; returns the replaced names.

    The weights are quantised on `quantize_device` (fast on a GPU) and stored back where they were.
    """
    return use_fp8_matmuls(transformer, quantize_device=quantize_device)


def compile_blocks(transformer: torch.nn.Module) -> int:
    """Give every transformer block a compiled ``forward`` (one shared compiled function); returns the block count.

    Only ``forward`` is compiled, not the module call, so forward hooks on a block (the memory modes' uploads) run
    outside the compiled code. Calling it again is a no-op.
    """
    blocks = transformer.transformer_blocks
    for limit in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, limit):
            setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), RECOMPILE_LIMIT))
    compiled = None
    for block in blocks:
        if getattr(block, "_casper_compiled", False):
            continue
        if compiled is None:
            compiled = torch.compile(type(block).forward, dynamic=False)
        block.forward = types.MethodType(compiled, block)
        block._casper_compiled = True
    return len(blocks)


def apply_speed_options(
    transformer: torch.nn.Module, *, compile: bool, fp8_compute: bool, quantize_device=None  # noqa: A002
) -> SpeedPlan:
    """Apply ``fp8_compute`` then ``compile`` to a transformer whose attention processors are already installed.

    Call `check_speed_options` first. The q/k/v projections must already be fused when wanted
    (`casper_core.attention.set_attention_backend(..., fuse_qkv=True)`).
    """
    plan = SpeedPlan(compile=compile, fp8_compute=fp8_compute)
    if fp8_compute:
        plan.fp8_linears = apply_fp8_compute(transformer, quantize_device)
    if compile:
        compile_blocks(transformer)
    return plan
