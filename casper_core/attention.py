"""Choosing the scaled-dot-product-attention kernel that CogVideoX's attention really runs.

diffusers' `CogVideoXAttnProcessor2_0` calls `torch.nn.functional.scaled_dot_product_attention` directly, so
diffusers' own attention-backend switch does not reach it. We install a processor that runs the same computation
inside a `torch.nn.attention.sdpa_kernel` context, which restricts (or orders) the kernels PyTorch may pick.

Backends:

- ``"auto"``: on a CUDA device of compute capability ≥ 9.0 (Hopper), prefer cuDNN attention, then flash, then
  memory-efficient, then math (cuDNN ran about 12 % faster than flash on CogVideoX 1.5 shapes on an H100); elsewhere
  leave PyTorch's own choice.
- ``"sdpa_cudnn"``, ``"sdpa_flash"``, ``"sdpa_efficient"``: only that kernel (CUDA; an input it cannot take raises
  PyTorch's "No available kernel" error instead of silently falling back).
- ``"sdpa_math"``: the reference math kernel (any device; slow, for checks).
- ``"sage"``: SageAttention (PyPI ``sageattention``; `casper_core.sage_attention`): int8 Q·Kᵀ and fp16 P·V Triton
  kernels, CUDA only. Changes the arithmetic (8-bit rounding of queries and keys); its drift against SDPA is in
  BENCHMARKS.md. The processor is `CogVideoXKernelAttnProcessor`, our own copy of diffusers' CogVideoX attention
  with the attention call swapped.
"""
from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

ATTENTION_BACKENDS = ("auto", "sdpa_cudnn", "sdpa_flash", "sdpa_efficient", "sdpa_math", "sage")
_KERNELS = {
    "sdpa_cudnn": [SDPBackend.CUDNN_ATTENTION],
    "sdpa_flash": [SDPBackend.FLASH_ATTENTION],
    "sdpa_efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "sdpa_math": [SDPBackend.MATH],
}
_HOPPER_PRIORITY = [
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.MATH,
]
_CUDA_ONLY = ("sdpa_cudnn", "sdpa_flash", "sdpa_efficient")


class SDPAKernelAttnProcessor:
    """A CogVideoX attention processor whose SDPA call runs under ``sdpa_kernel(kernels, set_priority=...)``.

    The computation (projections, RoPE, attention, output projection) is diffusers' own: `CogVideoXAttnProcessor2_0`,
    or `FusedCogVideoXAttnProcessor2_0` with ``fused=True`` (after `transformer.fuse_qkv_projections()`).
    """

    def __init__(self, kernels: list[SDPBackend], set_priority: bool = False, fused: bool = False):
        self.kernels = list(kernels)
        self.set_priority = set_priority
        self.fused = fused
        self.inner = _diffusers_processor(fused)

    # The explicit signature matters: diffusers' `Attention.forward` drops every keyword that the processor's
    # `__call__` does not name (a `**kwargs` signature would silently lose `image_rotary_emb`, i.e. RoPE).
    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ):
        with sdpa_kernel(self.kernels, set_priority=self.set_priority):
            return self.inner(
                attn,
                hidden_states,
                encoder_hidden_states,
                attention_mask=attention_mask,
                image_rotary_emb=image_rotary_emb,
            )


class CogVideoXKernelAttnProcessor:
    """CogVideoX joint text-video attention with the attention kernel passed in.

    Computes what diffusers' `CogVideoXAttnProcessor2_0` / `FusedCogVideoXAttnProcessor2_0` compute (text tokens
    first, q/k norms, RoPE on the video tokens only, output projection, split back into video and text), with
    ``attention(query, key, value)`` on ``[B, heads, tokens, head_dim]`` tensors in place of
    `torch.nn.functional.scaled_dot_product_attention` (scale 1/√head_dim, no mask, no causality). Works with
    separate or fused (``to_qkv``) projections.
    """

    def __init__(self, attention):
        self.attention = attention

    # Explicit signature: diffusers drops every keyword the processor does not name (see SDPAKernelAttnProcessor).
    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ):
        from diffusers.models.embeddings import apply_rotary_emb

        if attention_mask is not None:
            raise ValueError("CogVideoXKernelAttnProcessor: attention_mask is not supported (CogVideoX passes none)")
        text_length = encoder_hidden_states.size(1)
        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        batch = hidden_states.shape[0]
        if getattr(attn, "fused_projections", False) and hasattr(attn, "to_qkv"):
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (x.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:  # video tokens only; text tokens carry no position
            query = torch.cat([query[:, :, :text_length], apply_rotary_emb(query[:, :, text_length:], image_rotary_emb)],
                              dim=2)
            if not attn.is_cross_attention:
                key = torch.cat([key[:, :, :text_length], apply_rotary_emb(key[:, :, text_length:], image_rotary_emb)],
                                dim=2)
        hidden_states = self.attention(query, key, value)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        encoder_hidden_states, hidden_states = hidden_states.split(
            [text_length, hidden_states.size(1) - text_length], dim=1
        )
        return hidden_states, encoder_hidden_states


def check_attention_backend(backend: str | None, device: torch.device | str) -> str:
    """Validate `backend` for `device`; None means "auto". Returns the backend name."""
    backend = "auto" if backend is None else backend
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    if backend in _CUDA_ONLY and torch.device(device).type != "cuda":
        raise ValueError(
            f"attention_backend {backend!r} needs a CUDA device, but the pipeline runs on {torch.device(device)}; "
            "use 'auto' or 'sdpa_math'"
        )
    if backend == "sage":
        from .sage_attention import check_sage_attention

        check_sage_attention(device)
    return backend


def set_attention_backend(
    transformer: torch.nn.Module, backend: str | None, device: torch.device | str, *, fuse_qkv: bool = False
) -> str:
    """Install the processor for `backend` on every attention layer of a CogVideoX transformer.

    Args:
        fuse_qkv: first fuse the q, k, v projections into one matrix product (diffusers'
            `fuse_qkv_projections`; the fused weights are added beside the originals, which are then released).

    Returns a description of what was installed: the backend name, or ``"auto (pytorch default)"`` when "auto"
    leaves PyTorch's own choice in place.
    """
    backend = check_attention_backend(backend, device)
    device = torch.device(device)
    if fuse_qkv:
        fuse_qkv_projections(transformer)
    fused = getattr(transformer.transformer_blocks[0].attn1, "fused_projections", False)
    if backend == "sage":
        from .sage_attention import sage_attention

        transformer.set_attn_processor(CogVideoXKernelAttnProcessor(sage_attention))
        return backend
    if backend == "auto":
        if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9:
            transformer.set_attn_processor(SDPAKernelAttnProcessor(_HOPPER_PRIORITY, set_priority=True, fused=fused))
            return "auto (cudnn > flash > efficient > math)"
        transformer.set_attn_processor(_diffusers_processor(fused))
        return "auto (pytorch default)"
    transformer.set_attn_processor(SDPAKernelAttnProcessor(_KERNELS[backend], fused=fused))
    return backend


def _diffusers_processor(fused: bool):
    # diffusers is imported here, not at module level: `import casper_core` must work without it.
    from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0, FusedCogVideoXAttnProcessor2_0

    return FusedCogVideoXAttnProcessor2_0() if fused else CogVideoXAttnProcessor2_0()


def fuse_qkv_projections(transformer: torch.nn.Module) -> None:
    """Fuse every attention layer's q, k, v projections into ``to_qkv`` and drop the separate matrices."""
    transformer.fuse_qkv_projections()
    for module in transformer.modules():
        if getattr(module, "fused_projections", False) and hasattr(module, "to_qkv"):
            for name in ("to_q", "to_k", "to_v"):
                if hasattr(module, name):
                    delattr(module, name)
