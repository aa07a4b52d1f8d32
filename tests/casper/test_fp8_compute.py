"""fp8 row-wise matrix products (`casper_core.fp8_compute`) on the CPU."""
import pytest
import torch

from casper_core import testing
from casper_core.fp8_compute import FP8, Fp8RowwiseLinear, quantize_rowwise, use_fp8_matmuls


def test_quantize_rowwise_round_trips_within_fp8_precision():
    matrix = torch.randn(32, 64, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 2, 32)[:, None]
    quantized, scale = quantize_rowwise(matrix)
    assert quantized.dtype == FP8 and scale.shape == (32, 1)
    assert quantized.float().abs().amax(dim=1).sub(448).abs().max() < 1e-3  # every row uses the full fp8 range
    relative = (quantized.float() * scale - matrix).abs() / matrix.abs().amax(dim=1, keepdim=True)
    assert relative.max() < 2 ** -4  # e4m3: 3 mantissa bits


def test_fp8_linear_equals_its_dequantized_product():
    generator = torch.Generator().manual_seed(1)
    linear = torch.nn.Linear(64, 48)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(48, 64, generator=generator) / 8)
    fp8 = Fp8RowwiseLinear(linear.to(torch.bfloat16))
    x = torch.randn(3, 37, 64, generator=generator, dtype=torch.bfloat16)  # 111 rows: not a multiple of 16
    out = fp8(x)
    assert out.shape == (3, 37, 48) and out.dtype == torch.bfloat16
    x_fp8, x_scale = quantize_rowwise(x.reshape(-1, 64))
    expected = (x_fp8.float() * x_scale) @ (fp8.weight_fp8.float() * fp8.weight_scale.t()).t() + fp8.bias.float()
    torch.testing.assert_close(out.float().reshape(-1, 48), expected, rtol=2e-2, atol=2e-2)  # bf16 output rounding
    error = (out.float() - linear(x).float()).abs().max() / linear(x).float().abs().max()
    assert 0 < error < 0.08  # really computed in fp8 (not bit-equal to bf16), and close to it


def test_use_fp8_matmuls_replaces_block_matrices_only(tmp_path):
    from diffusers import CogVideoXTransformer3DModel

    config = {k: v for k, v in testing.tiny_transformer_config().items() if not k.startswith("_")}
    model = testing.randomize_(CogVideoXTransformer3DModel.from_config(config), seed=0).to(torch.bfloat16).eval()
    inputs = dict(
        hidden_states=torch.randn(1, 2, 33, 4, 6, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16),
        encoder_hidden_states=torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16),
        timestep=torch.tensor([500]),
        return_dict=False,
    )
    with torch.no_grad():
        reference = model(**inputs)[0].float()
        replaced = use_fp8_matmuls(model)
        out = model(**inputs)[0].float()
    per_block = ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "ff.net.0.proj", "ff.net.2"]
    assert replaced == [f"transformer_blocks.{b}.{name}" for b in range(2) for name in per_block]
    assert isinstance(model.transformer_blocks[0].attn1.to_q, Fp8RowwiseLinear)
    assert isinstance(model.proj_out, torch.nn.Linear) and isinstance(model.patch_embed.proj, torch.nn.Linear)
    assert torch.isfinite(out).all()
    assert (out - reference).norm() / reference.norm() < 0.1


def test_fp8_linear_refuses_odd_widths():
    with pytest.raises(ValueError, match="divisible by 16"):
        Fp8RowwiseLinear(torch.nn.Linear(24, 16))
