"""SageAttention (PyPI ``sageattention``) as an opaque PyTorch operator, for the ``"sage"`` attention backend.

SageAttention quantises queries and keys to int8 per block (keys smoothed by their mean over the sequence first) and
runs Q·Kᵀ on int8 tensor cores and P·V in fp16, in Triton kernels. It needs CUDA, Triton and the package; the
version on PyPI (1.0.6) takes head dims 64, 96 and 128 (CogVideoX: 64).

The call is registered as the custom operator ``casper::sage_attention`` so that `torch.compile` keeps it as one
node instead of tracing into the package's Python and Triton code, and so that the input is never modified in place
(the package subtracts the key mean in place; we subtract it out of place and tell the package not to).
"""
from __future__ import annotations

import importlib.util

import torch

PACKAGE = "sageattention"
HEAD_DIMS = (64, 96, 128)
# int8 tensor-core kernels: Turing and newer are what the package targets; its tests run on Ampere and newer.
MIN_CAPABILITY = (8, 0)


def check_sage_attention(device: torch.device | str) -> None:
    """Refuse SageAttention where it cannot run, naming every problem at once.

    Raises ValueError when the device cannot run it (not CUDA, compute capability below 8.0), else ImportError when
    the ``sageattention`` or ``triton`` package is missing.
    """
    device = torch.device(device)
    device_problems = []
    if device.type != "cuda":
        device_problems.append(f"it runs only on CUDA GPUs, but the pipeline runs on {device}")
    elif torch.cuda.is_available() and torch.cuda.get_device_capability(device) < MIN_CAPABILITY:
        capability = ".".join(map(str, torch.cuda.get_device_capability(device)))
        device_problems.append(f"it needs a GPU of compute capability ≥ 8.0, {torch.cuda.get_device_name(device)} "
                               f"has {capability}")
    missing = [name for name in (PACKAGE, "triton") if importlib.util.find_spec(name) is None]
    package_problems = [f"{' and '.join(missing)} not installed (pip install {' '.join(missing)})"] if missing else []
    if not device_problems and not package_problems:
        return
    message = ("attention_backend 'sage' (SageAttention): " + "; ".join(device_problems + package_problems)
               + ". Use attention_backend 'auto' instead.")
    raise ValueError(message) if device_problems else ImportError(message)


@torch.library.custom_op("casper::sage_attention", mutates_args=())
def sage_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Attention softmax(Q·Kᵀ/√d)·V of ``[B, heads, tokens, head_dim]`` CUDA tensors (fp16/bf16), by SageAttention.

    Output: ``[B, heads, query tokens, head_dim]`` in the input dtype.
    """
    from sageattention import sageattn

    if query.shape[-1] not in HEAD_DIMS:
        raise ValueError(f"sage_attention: head_dim must be one of {HEAD_DIMS}, got {query.shape[-1]}")
    # Softmax is unchanged by a constant added to every key (per query row), so smoothing is exact before rounding.
    smoothed_key = key - key.mean(dim=2, keepdim=True)
    return sageattn(query.contiguous(), smoothed_key.contiguous(), value.contiguous(), tensor_layout="HND",
                    is_causal=False, smooth_k=False)


@sage_attention.register_fake
def _(query, key, value):
    return torch.empty_like(query, memory_format=torch.contiguous_format)
