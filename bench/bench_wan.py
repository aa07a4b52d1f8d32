"""Speed and memory of Casper on Wan2.1-Fun (real-size 1.3B and 14B architectures, random weights).

Per model: seconds per denoising step, end-to-end seconds of one call (text encoding, VAE encode, steps, decode) and
peak GPU memory, for our `WanCasperPipeline` and — with ``--reference PATH`` (a gen-omnimatte-public checkout) — the
public reference's `WanFunInpaintPipeline` on the same weights, in the same process. Prints a table and writes JSON.

    python bench/bench_wan.py --model 1.3b 14b --device cuda --steps 5 --out bench_wan.json \\
        --reference .ref/gen-omnimatte-public

``--model tiny`` runs in seconds on the CPU (a check of the script, not a measurement). The weights are random (no
download), so only timing and memory mean anything; the release's settings are the defaults (81 frames, 480 × 832,
bf16, no guidance, 50 steps in a real run; here ``--steps``). The default clip is 77 frames: both pipelines pad it
to one 81-frame window (an 81-frame clip pads to 85 frames, 4k+1 with k odd, and runs as two windows in both).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from casper_core import wan_keys
from casper_core.memory import MEMORY_MODES, apply_memory_mode
from casper_core.temporal import pad_frames, padded_length
from casper_core.testing import randomize_
from casper_core.wan_loading import SCHEDULER_CONFIG
from casper_core.wan_pipeline import WanCasperPipeline
from casper_core.wan_testing import (RELEASE_14B_CONFIG, RELEASE_1_3B_CONFIG, TINY_T5_CONFIG, TINY_VAE_CONFIG,
                                     import_reference_wan, tiny_transformer_config)

UMT5_XXL = {"vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
            "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
            "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "layer_norm_epsilon": 1e-6,
            "dropout_rate": 0.0, "is_encoder_decoder": False, "use_cache": False, "tie_word_embeddings": False}


def build_components(model: str, dtype: torch.dtype, seed: int = 0):
    """Random-weight transformer (original config), VAE and UMT5 encoder of `model` on the CPU, and a tokenizer."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from casper_core.testing import write_tokenizer
    import tempfile

    tokenizer = write_tokenizer(Path(tempfile.mkdtemp()) / "tokenizer")
    if model == "tiny":
        t5 = {**TINY_T5_CONFIG, "vocab_size": 128}
        original = tiny_transformer_config(text_dim=t5["d_model"])
        vae_config = TINY_VAE_CONFIG
    else:
        t5, vae_config = UMT5_XXL, {}
        original = {"1.3b": RELEASE_1_3B_CONFIG, "14b": RELEASE_14B_CONFIG}[model]
    with torch.device("meta"):
        transformer = WanTransformer3DModel.from_config(wan_keys.transformer_config_to_diffusers(original))
        text_encoder = UMT5EncoderModel(UMT5Config(**t5))
    # cast on the meta device first: a 14 B model never exists in float32 in host memory
    transformer = randomize_(transformer.to(dtype).to_empty(device="cpu"), seed)
    transformer.rope = type(transformer.rope)(transformer.rope.attention_head_dim, transformer.rope.patch_size,
                                              transformer.rope.max_seq_len)
    text_encoder = randomize_(text_encoder.to(dtype).to_empty(device="cpu"), seed + 1)
    vae = randomize_(AutoencoderKLWan(**vae_config).to(dtype), seed + 2)
    return original, transformer.eval(), vae.eval(), text_encoder.eval(), tokenizer


def inputs(frames: int, height: int, width: int):
    g = torch.Generator().manual_seed(0)
    video = torch.rand(frames, height, width, 3, generator=g)
    trimask = torch.full((1, frames, height, width), 0.5)
    trimask[:, :, height // 4: height // 2, width // 4: width // 2] = 1.0
    return video, trimask


def measure(run, device: torch.device, steps: int) -> dict:
    """Time `run(progress)` and its steps, after a one-step warm-up run (CUDA context, kernel selection and the
    allocator's first growth would otherwise land on whichever pipeline runs first); peak GPU memory when on CUDA."""
    run(lambda *_: None, steps=1)
    stamps = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)

    def progress(*_):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    start = time.perf_counter()
    run(progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total = time.perf_counter() - start
    # the first step includes warm-up (kernel selection); steady state from the later ones
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else float("nan")
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"s_per_step": per_step, "end_to_end_s": total, "peak_gib": peak, "steps": steps}


def run_ours(parts, args, device, dtype) -> dict:
    original, transformer, vae, text_encoder, tokenizer = parts
    from diffusers import FlowMatchEulerDiscreteScheduler

    memory = apply_memory_mode({"text_encoder": text_encoder, "vae": vae, "transformer": transformer},
                               args.memory_mode, device, dtype)
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    pipe = WanCasperPipeline(transformer, vae, text_encoder, tokenizer, scheduler)
    pipe.memory_plan = memory
    pipe.set_execution_device(memory.execution_device)
    video, trimask = inputs(args.frames, args.height, args.width)

    def run(progress, steps=args.steps):
        pipe(video, trimask, steps=steps, window_frames=args.window_frames, progress=progress)

    result = measure(run, device, args.steps)
    if memory.offloader is not None:
        memory.offloader.remove()
    transformer.to("cpu"), vae.to("cpu"), text_encoder.to("cpu")
    return result


def run_reference(parts, args, device, dtype) -> dict:
    from diffusers import FlowMatchEulerDiscreteScheduler

    original, transformer, vae, text_encoder, tokenizer = parts
    Transformer, Vae, VaeCore, TextEncoder, Pipeline = import_reference_wan(args.reference)
    # Built on the meta device and given our tensors (assign): no second copy of 14 B weights in host memory.
    with torch.device("meta"):
        ref_transformer = Transformer.from_config(original)
    ref_transformer.load_state_dict({wan_keys.transformer_key_to_original(k): v
                                     for k, v in transformer.state_dict().items()}, strict=False, assign=True)
    ref_transformer.freqs = torch.empty(0)  # its RoPE table is a plain attribute: rebuilt on the CPU by its own code
    ref_transformer.disable_riflex()
    ref_vae = Vae(latent_channels=16)
    config = vae.config
    ref_vae.model = VaeCore(dim=config.base_dim, z_dim=config.z_dim, dim_mult=list(config.dim_mult),
                            num_res_blocks=config.num_res_blocks, attn_scales=[],
                            temperal_downsample=list(config.temperal_downsample), dropout=0.0)
    ref_vae.load_state_dict({"model." + wan_keys.vae_key_to_original(k, config.num_res_blocks): v
                             for k, v in vae.state_dict().items()}, strict=False)
    c = text_encoder.config
    with torch.device("meta"):
        ref_t5 = TextEncoder(vocab=c.vocab_size, dim=c.d_model, dim_attn=c.d_kv * c.num_heads, dim_ffn=c.d_ff,
                             num_heads=c.num_heads, num_layers=c.num_layers,
                             num_buckets=c.relative_attention_num_buckets, shared_pos=False, dropout=0.0)
    ref_t5.load_state_dict({wan_keys.t5_key_to_original(k): v for k, v in text_encoder.state_dict().items()
                            if wan_keys.t5_key_to_original(k)}, strict=False, assign=True)
    # the reference zeroes its CLIP features of a black picture; this returns those zeros without the CLIP model
    zero_clip = type("ZeroClip", (torch.nn.Module,), {"forward": lambda self, images: torch.zeros(
        1, 257, 1280, device=device, dtype=dtype)})()

    class OnDevice(Pipeline):
        _execution_device = device

    pipe = OnDevice(tokenizer=tokenizer, text_encoder=ref_t5.to(device, dtype).eval(),
                    vae=ref_vae.to(device, dtype).eval(), transformer=ref_transformer.to(device, dtype).eval(),
                    clip_image_encoder=zero_clip, scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG))
    video, trimask = inputs(args.frames, args.height, args.width)
    # the reference pads at read time (its temporal_padding): the same length as ours
    padded = max(padded_length(args.frames), args.window_frames)
    video, trimask = pad_frames(video, padded), pad_frames(trimask, padded, dim=1)

    def run(progress, steps=args.steps):
        def on_step(_pipe, step, timestep, kwargs):
            progress()
            return {}

        with torch.no_grad():
            pipe("empty scene", height=args.height, width=args.width, num_frames=args.window_frames,
                 video=video.permute(3, 0, 1, 2)[None].contiguous(), mask_video=trimask[None], guidance_scale=1.0,
                 num_inference_steps=steps, generator=torch.Generator(device).manual_seed(0),
                 use_trimask=True, temporal_multidiffusion_stride=16, callback_on_step_end=on_step,
                 callback_on_step_end_tensor_inputs=[])

    result = measure(run, device, args.steps)
    del pipe
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["1.3b", "14b"], choices=["1.3b", "14b", "tiny"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--memory-mode", default="gpu", choices=MEMORY_MODES)
    parser.add_argument("--frames", type=int, default=77)
    parser.add_argument("--window-frames", type=int, default=81)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--steps", type=int, default=5, help="denoising steps timed (a real run takes 50)")
    parser.add_argument("--reference", type=Path, help="gen-omnimatte-public checkout: also time its Wan pipeline")
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    rows = []
    for model in args.model:
        parts = build_components(model, dtype)
        rows.append({"model": model, "pipeline": "ours", **run_ours(parts, args, device, dtype)})
        if args.reference is not None:
            rows.append({"model": model, "pipeline": "reference", **run_reference(parts, args, device, dtype)})
        del parts
        if device.type == "cuda":
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"Casper on Wan2.1-Fun, {args.frames} frames {args.height}x{args.width}, window {args.window_frames}, "
          f"{args.dtype}, memory mode {args.memory_mode}, {args.steps} steps, random weights, {name}")
    print(f"{'model':6} {'pipeline':10} {'s/step':>8} {'end-to-end s':>13} {'peak GiB':>9}")
    for row in rows:
        print(f"{row['model']:6} {row['pipeline']:10} {row['s_per_step']:8.3f} {row['end_to_end_s']:13.2f} "
              f"{row['peak_gib']:9.2f}")
    if args.out:
        args.out.write_text(json.dumps({"device": name, "settings": {k: str(v) for k, v in vars(args).items()},
                                        "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
