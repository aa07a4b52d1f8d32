"""cuDNN attention at Casper's window size, eager and compiled, with q/k/v in either memory layout.

    python bench/bench_attention_layout.py --out attention_layout.json

One attention layer of the CogVideoX-Fun-V1.5 transformer for 85 frames at 384×672 (48 heads × 64, 11 088 video
tokens + 226 text tokens, bf16, cuDNN SDPA). Asks whether the cuDNN kernel is slower when its inputs come from
Inductor's fused kernels: (1) the kernel alone on a contiguous ``[B, heads, tokens, dim]`` tensor and on the
transposed view of ``[B, tokens, heads·dim]`` that diffusers' eager processor passes; (2) a RoPE-like element-wise
op followed by attention, eager and under ``torch.compile``, with and without forcing the token-major layout.
Milliseconds per call (CUDA events, mean of 20 calls after 3 warm-ups). Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HEADS, HEAD_DIM, TOKENS = 48, 64, 11_088 + 226
LAYERS = 42  # transformer blocks, one attention each


def time_ms(fn, *args, calls: int = 20) -> float:
    for _ in range(3):
        fn(*args)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn(*args)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / calls


def cudnn_attention(q, k, v):
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        return F.scaled_dot_product_attention(q, k, v)


def rope_then_attention(x, cos, sin, token_major: bool):
    q = x.view(1, TOKENS, HEADS, HEAD_DIM).transpose(1, 2)
    half = HEAD_DIM // 2
    q = q * cos + torch.cat([-q[..., half:], q[..., :half]], -1) * sin
    if token_major:  # the layout diffusers' eager path hands to SDPA
        q = q.transpose(1, 2).contiguous().transpose(1, 2)
    return cudnn_attention(q, q, q)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU (cuDNN attention)")
    torch.manual_seed(0)
    x = torch.randn(1, TOKENS, HEADS * HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    cos, sin = (torch.randn(TOKENS, HEAD_DIM, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    head_major = x.view(1, TOKENS, HEADS, HEAD_DIM).transpose(1, 2).contiguous()
    token_major = x.view(1, TOKENS, HEADS, HEAD_DIM).transpose(1, 2)
    rows = [
        ("attention only, [B,heads,tokens,dim] contiguous", time_ms(cudnn_attention, head_major, head_major, head_major)),
        ("attention only, token-major view (diffusers eager)", time_ms(cudnn_attention, token_major, token_major,
                                                                       token_major)),
    ]
    for forced in (False, True):
        label = "token-major forced" if forced else "layout as produced"
        rows.append((f"RoPE + attention, eager, {label}",
                     time_ms(lambda a, c, s: rope_then_attention(a, c, s, forced), x, cos, sin)))
        compiled = torch.compile(lambda a, c, s: rope_then_attention(a, c, s, forced))
        rows.append((f"RoPE + attention, compiled, {label}", time_ms(compiled, x, cos, sin)))
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  {HEADS}x{HEAD_DIM} heads, {TOKENS} tokens")
    print(f"{'case':60s} ms / layer   × {LAYERS} layers")
    for name, ms in rows:
        print(f"{name:60s} {ms:10.2f} {LAYERS * ms:11.1f}")
    with open(args.out, "x") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                   "rows": [{"case": name, "ms_per_layer": ms} for name, ms in rows]}, f, indent=1)


if __name__ == "__main__":
    main()
