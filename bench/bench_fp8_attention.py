"""cuDNN's fp8 attention against its bf16 attention at Casper's window size (issue 11: is an 8-bit attention kernel
the way to the speed targets on Hopper?).

    pip install nvidia-cudnn-frontend     # cuDNN's graph API for Python; uses the cuDNN that torch brings
    python bench/bench_fp8_attention.py --out fp8_attention.json

One attention layer of the CogVideoX-Fun-V1.5 transformer for 85 frames at 384×672 (48 heads × 64, 11 088 video
tokens + 226 text tokens), ``[B, heads, tokens, dim]`` contiguous:

- ``bf16 cuDNN SDPA``: what the pipeline runs today (``torch`` SDPA with the cuDNN backend);
- ``fp8 cuDNN SDPA, kernel``: cuDNN's fp8 (e4m3) flash-attention forward on inputs already in fp8, per-tensor scales
  (the softmax probabilities scaled by 448, the output by the value's scale; Hopper requires an fp8 output);
- ``fp8 cuDNN SDPA + quantisation``: the same plus the eager per-tensor quantisation of q, k, v and the output's
  conversion back, which a real integration would have to fuse into the preceding kernels to gain anything.

Milliseconds per call (CUDA events, mean of 20 calls after 3 warm-ups), the attention's throughput, and the fp8
output's difference from the bf16 one on these random inputs (near-uniform attention, the hardest case for fp8
probabilities). Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import math

import torch
import torch.nn.functional as F

from bench_attention_layout import HEAD_DIM, HEADS, LAYERS, TOKENS, cudnn_attention, time_ms

E4M3_MAX = 448.0  # largest finite float8_e4m3fn


def quantise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor e4m3 copy of ``x`` and the scale that turns it back (``x ≈ fp8 * descale``)."""
    scale = E4M3_MAX / x.abs().amax().float().clamp_min(1e-12)
    return (x.float() * scale).to(torch.float8_e4m3fn), (1.0 / scale).view(1, 1, 1, 1)


class Fp8Attention:
    """One cuDNN fp8 SDPA graph for a fixed shape, built once and executed with per-tensor scales."""

    def __init__(self, shape: tuple[int, int, int, int]):
        import cudnn  # nvidia-cudnn-frontend

        self.shape = shape
        stride = (shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1)
        self.handle = cudnn.create_handle()
        cudnn.set_stream(handle=self.handle, stream=torch.cuda.current_stream().cuda_stream)
        e4m3, fp32 = cudnn.data_type.FP8_E4M3, cudnn.data_type.FLOAT
        graph = cudnn.pygraph(io_data_type=e4m3, intermediate_data_type=fp32, compute_data_type=fp32,
                              handle=self.handle)
        self.q, self.k, self.v = (graph.tensor(name=n, dim=shape, stride=stride, data_type=e4m3) for n in "qkv")
        scalar = dict(dim=(1, 1, 1, 1), stride=(1, 1, 1, 1), data_type=fp32)
        self.scales = [graph.tensor(name=n, **scalar) for n in ("dq", "dk", "dv", "ds", "ss", "so")]
        dq, dk, dv, ds, ss, so = self.scales
        self.out, _, self.amax_s, self.amax_o = graph.sdpa_fp8(
            q=self.q, k=self.k, v=self.v, descale_q=dq, descale_k=dk, descale_v=dv, descale_s=ds, scale_s=ss,
            scale_o=so, attn_scale=1.0 / math.sqrt(shape[3]), use_causal_mask=False, generate_stats=False)
        self.out.set_output(True).set_dim(shape).set_stride(stride).set_data_type(e4m3)
        for amax in (self.amax_s, self.amax_o):
            amax.set_output(True).set_dim((1, 1, 1, 1)).set_stride((1, 1, 1, 1)).set_data_type(fp32)
        graph.validate()
        graph.build_operation_graph()
        graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        graph.check_support()
        graph.build_plans()
        self.graph = graph
        self.workspace = torch.empty(graph.get_workspace_size(), device="cuda", dtype=torch.uint8)
        self.o8 = torch.empty(shape, device="cuda", dtype=torch.float8_e4m3fn)
        self.amax_buffers = [torch.empty(1, 1, 1, 1, device="cuda") for _ in range(2)]
        self.s_scale = torch.full((1, 1, 1, 1), E4M3_MAX, device="cuda")  # probabilities lie in 0..1

    def run_fp8(self, q8, k8, v8, dq, dk, dv) -> torch.Tensor:
        """Attention of fp8 inputs with their descales; returns the fp8 output (scaled like ``v``)."""
        pack = {self.q: q8, self.k: k8, self.v: v8, self.out: self.o8,
                self.amax_s: self.amax_buffers[0], self.amax_o: self.amax_buffers[1]}
        # |output| <= max|v|: the output takes the value's scale
        pack.update(zip(self.scales, (dq, dk, dv, 1.0 / self.s_scale, self.s_scale, 1.0 / dv)))
        self.graph.execute(pack, self.workspace, handle=self.handle)
        return self.o8

    def __call__(self, q, k, v) -> torch.Tensor:
        (q8, dq), (k8, dk), (v8, dv) = quantise(q), quantise(k), quantise(v)
        return (self.run_fp8(q8, k8, v8, dq, dk, dv).float() * dv).to(q.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    shape = (args.batch, HEADS, TOKENS, HEAD_DIM)
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3))
    fp8 = Fp8Attention(shape)
    quantised = [quantise(x) for x in (q, k, v)]
    cases = {
        "bf16 cuDNN SDPA": lambda: cudnn_attention(q, k, v),
        "fp8 cuDNN SDPA, kernel": lambda: fp8.run_fp8(*(t for t, _ in quantised), *(s for _, s in quantised)),
        "fp8 cuDNN SDPA + quantisation": lambda: fp8(q, k, v),
    }
    flops = 4 * args.batch * HEADS * TOKENS * TOKENS * HEAD_DIM
    reference = cudnn_attention(q, k, v).float()
    difference = (fp8(q, k, v).float() - reference).abs()
    rows = []
    import cudnn
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  cuDNN {cudnn.backend_version()}  "
          f"{HEADS}x{HEAD_DIM} heads, {TOKENS} tokens, batch {args.batch}")
    print(f"| case | ms / layer | × {LAYERS} layers | TFLOP/s |")
    print("|---|---|---|---|")
    for name, fn in cases.items():
        ms = time_ms(fn)
        rows.append({"case": name, "ms": ms, "ms_all_layers": LAYERS * ms, "tflops": flops / ms / 1e9})
        print(f"| {name} | {ms:.2f} | {LAYERS * ms:.1f} | {flops / ms / 1e9:.0f} |")
    drift = {"mean_abs": difference.mean().item(), "max_abs": difference.max().item(),
             "reference_mean_abs": reference.abs().mean().item()}
    drift["relative"] = drift["mean_abs"] / drift["reference_mean_abs"]
    print(f"fp8 vs bf16 output: mean abs {drift['mean_abs']:.5f} ({100 * drift['relative']:.1f} % of the mean "
          f"magnitude), max abs {drift['max_abs']:.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "cudnn": cudnn.backend_version(), "shape": shape, "rows": rows, "drift": drift}, f, indent=1)


if __name__ == "__main__":
    main()
