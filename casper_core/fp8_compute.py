"""fp8 matrix products for the transformer's big Linear layers (row-wise dynamic quantisation, no torchao).

Each chosen `nn.Linear` becomes an `Fp8RowwiseLinear`: its weight is stored once as float8_e4m3fn with one fp32
scale per output row; at run time every input row is scaled to the fp8 range with its own scale and the product runs
in `torch._scaled_mm` (fp8 × fp8 → bf16 on Hopper tensor cores, twice the bf16 rate), the scales applied to the
result. Unlike fp8 *storage* (`casper_core.memory`), this changes the arithmetic: results differ from bf16 by the
fp8 rounding of both operands (≈ 2⁻⁴ relative per element, averaging out over the reduction).

Worth it only where the quantisation of the activations is fused with neighbouring work (`torch.compile`);
eager, its extra element-wise passes eat the gain.
"""
from __future__ import annotations

import re

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
# The attention and feed-forward matrices of CogVideoX blocks: ~85 % of the transformer's parameters and FLOPs.
DEFAULT_PATTERN = r"^transformer_blocks\.\d+\.(attn1\.(to_q|to_k|to_v|to_qkv|to_out\.0)|ff\.net\.(0\.proj|2))$"


def quantize_rowwise(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[R, K] float → (fp8 [R, K], fp32 scale [R, 1]) with ``matrix ≈ fp8.float() * scale``."""
    amax = matrix.abs().amax(dim=-1, keepdim=True).float()
    scale = (amax / FP8_MAX).clamp(min=1e-12)
    quantized = (matrix.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return quantized, scale


class Fp8RowwiseLinear(torch.nn.Module):
    """`nn.Linear` replacement: fp8 weight with per-output-row scales, per-input-row dynamic activation scales.

    Input [..., in_features] (bf16 or fp32), output [..., out_features] in `out_dtype` (default: the input dtype,
    with bf16 used for the fp8 product).
    """

    def __init__(self, linear: torch.nn.Linear, quantize_device=None):
        """`quantize_device`: where the weight is quantised (e.g. a GPU, much faster than the CPU); the fp8 weight
        and scales are stored on the weight's own device either way."""
        super().__init__()
        if linear.in_features % 16 or linear.out_features % 16:
            raise ValueError(
                "Fp8RowwiseLinear needs in/out features divisible by 16, "
                f"got {linear.in_features}x{linear.out_features}"
            )
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        home = linear.weight.device
        weight, scale = quantize_rowwise(linear.weight.detach().to(quantize_device or home))
        self.register_buffer("weight_fp8", weight.to(home))
        self.register_buffer("weight_scale", scale.reshape(1, -1).contiguous().to(home))  # [1, out]: scale_b
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features)
        x_fp8, x_scale = quantize_rowwise(rows)
        out = torch._scaled_mm(
            x_fp8,
            self.weight_fp8.t(),  # column-major view, as _scaled_mm wants its second operand
            scale_a=x_scale,
            scale_b=self.weight_scale,
            bias=self.bias,
            out_dtype=torch.bfloat16,
        )
        return out.to(x.dtype).reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8 rowwise"


def use_fp8_matmuls(module: torch.nn.Module, pattern: str = DEFAULT_PATTERN, quantize_device=None) -> list[str]:
    """Replace every `nn.Linear` of `module` whose qualified name matches `pattern` by an `Fp8RowwiseLinear`.

    Returns the replaced names. The original bf16 weights are released. `quantize_device`: see `Fp8RowwiseLinear`.
    """
    regex = re.compile(pattern)
    targets = [
        name for name, child in module.named_modules() if isinstance(child, torch.nn.Linear) and regex.search(name)
    ]
    for name in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, Fp8RowwiseLinear(getattr(parent, attr), quantize_device))
    return targets
