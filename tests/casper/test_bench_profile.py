"""The kernel classifier of bench/bench_casper.py's profile table (which kernels count as attention, matrix products
or glue)."""
import importlib.util
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def kernel_kind():
    spec = importlib.util.spec_from_file_location(
        "bench_casper_for_test", Path(__file__).parents[2] / "bench" / "bench_casper.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module.kernel_kind
    finally:
        sys.modules.pop(spec.name, None)


@pytest.mark.parametrize("name, kind", [
    # the attention kernels themselves: cuDNN, FlashAttention, SageAttention's Triton kernel
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x64_4x1x1_cga1x1x1", "attention"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128, 128, 4>>", "attention"),
    ("_attn_fwd", "attention"),
    # Inductor names fused element-wise and reduction kernels after the ops they feed: RoPE before SDPA, the fp8
    # activation quantisation before a scaled matmul. They are glue, not attention or matrix products.
    ("triton_poi_fused__scaled_dot_product_cudnn_attention__to_copy_add_copy_mul_neg_slice_split_5", "other"),
    ("triton_red_fused__scaled_mm__to_copy_abs_amax_clamp_div_gelu_t_view_11", "other"),
    ("triton_per_fused_native_layer_norm_split_transpose_view_3", "other"),
    # matrix products: cuBLAS, Inductor's templates, torch._scaled_mm's kernels
    ("nvjet_tst_256x128_64x4_1x2_h_bz_coopA_NTN", "gemm"),
    ("triton_tem_fused_mm_5", "gemm"),
    ("sm90_xmma_gemm_e4m3bf16_e4m3f32_f32_tn_n_tilesize128x128x128", "gemm"),
    ("void at::native::vectorized_layer_norm_kernel<c10::BFloat16, float, true>", "other"),
])
def test_kernels_are_classified_by_what_they_compute(kernel_kind, name, kind):
    assert kernel_kind(name) == kind
