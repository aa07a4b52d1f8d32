"""Benchmark Casper's real-size architecture (random weights): speed and peak GPU memory per memory mode and variant.

Architecture: the CogVideoX-Fun-V1.5-5b-InP transformer (42 layers, 48 heads × 64, in_channels 33, patch 2 × 2 × 2,
text 226 × 4096), the CogVideoX 1.5 VAE, a T5 v1.1 XXL-sized encoder; 85 frames at 384×672 (22 latent frames,
11 088 video tokens + 226 text tokens), 50 DDIM steps, bf16. Weights are built directly on the device and filled with
small random normal values (speed does not depend on the values; zeros could take shortcuts).

Two parts:

1. memory modes (`--modes`): for each mode the whole data flow of one Casper window — T5 prompt encoding, VAE encode
   of the video, `--steps` transformer + DDIM steps, VAE decode — timed per phase, with peak GPU memory.
2. speed variants (`--variants`, "gpu" placement, transformer steps only): plain SDPA, cuDNN / flash SDPA kernels,
   per-block `torch.compile` (compile time reported apart), fused q/k/v projections, fp8 row-wise matmuls
   (`casper_core.fp8_compute`, `torch._scaled_mm`) + compile.

Per-step times are CUDA-event medians after warm-up; "50-step" columns are 50 × the median step.

    python bench/bench_casper.py --device cuda --out bench/results/casper.json            # everything (~8 min)
    python bench/bench_casper.py --device cuda --quick --out bench/results/casper_quick.json
    python bench/bench_casper.py --device cpu --tiny --out /tmp/casper_tiny.json          # end-to-end check, no GPU
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

# Run from an installed checkout (`pip install -e .`) or with `PYTHONPATH=.` from the repository root.
from casper_core import testing  # noqa: E402
from casper_core.attention import set_attention_backend  # noqa: E402
from casper_core.memory import MEMORY_MODES, apply_memory_mode  # noqa: E402

VARIANTS = ("sdpa", "sdpa_cudnn", "sdpa_flash", "compile", "compile_fused", "fp8_compile", "fp8_compile_fused")
ANCHOR_STEP_S = 0.493  # ../shared ANCHORS: plain SDPA bf16, one forward, same shapes, H100
GiB = 1024**3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny widths/depths, 5 frames at 32x48, 2 steps (CPU check)")
    parser.add_argument("--quick", action="store_true",
                        help="8 steps per mode, 5 per variant; 50-step figures extrapolated")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps per memory mode (default 50; quick 8)")
    parser.add_argument("--offload-steps", type=int, default=10,
                        help="cap on timed steps for group/sequential offload (50-step figures extrapolated)")
    parser.add_argument("--variant-steps", type=int, default=None, help="timed steps per speed variant (default 10)")
    parser.add_argument("--frames", type=int, default=None, help="video frames (4k+1 with k odd; default 85)")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--modes", default=None, help=f"comma list from {','.join(MEMORY_MODES)} or 'none'")
    parser.add_argument("--variants", default=None,
                        help=f"comma list from {','.join(VARIANTS)},fp8_eager or 'none'")
    parser.add_argument("--flow", choices=("pipeline", "components"), default="pipeline",
                        help="memory modes through the real CasperPipeline (default) or a bare component chain")
    parser.add_argument("--no-vae-tiling", action="store_true", help="VAE without spatial tiling / batch slicing")
    parser.add_argument("--out", required=True, help="JSON file to write (must not exist)")
    args = parser.parse_args(argv)

    args.device = torch.device(args.device)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    args.frames = args.frames or (5 if args.tiny else 85)
    args.height = args.height or (32 if args.tiny else 384)
    args.width = args.width or (48 if args.tiny else 672)
    args.steps = args.steps or (2 if args.tiny else 8 if args.quick else 50)
    args.variant_steps = args.variant_steps or (2 if args.tiny else 5 if args.quick else 10)
    latent_frames = (args.frames - 1) // 4 + 1
    if (args.frames - 1) % 4 or latent_frames % 2:
        parser.error(f"--frames must be 4k+1 with an even latent count k+1 (e.g. 85, 21, 5), got {args.frames}")
    if args.height % 16 or args.width % 16:
        parser.error("--height and --width must be multiples of 16")
    cpu_variants = ("sdpa", "fp8_eager", "compile_fused")
    if args.modes is None:
        args.modes = list(MEMORY_MODES)
    else:
        args.modes = [] if args.modes == "none" else args.modes.split(",")
    unknown = [m for m in args.modes if m not in MEMORY_MODES]
    if unknown:
        parser.error(f"unknown --modes {unknown}; choose from {MEMORY_MODES}")
    if args.variants is None:
        args.variants = list(cpu_variants if args.device.type == "cpu" else VARIANTS)
    else:
        args.variants = [] if args.variants == "none" else args.variants.split(",")
    unknown = [v for v in args.variants if v not in (*VARIANTS, "fp8_eager")]
    if unknown:
        parser.error(f"unknown --variants {unknown}; choose from {VARIANTS + ('fp8_eager',)}")
    args.out = Path(args.out)
    if args.out.exists():
        parser.error(f"--out {args.out} exists; results are never overwritten")
    return args


# ----------------------------------------------------------------------------------------------------------------
# Building the models


def configs(tiny: bool) -> tuple[dict, dict, dict]:
    strip = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    if tiny:
        t5 = testing.tiny_t5_config(vocab_size=128)
        return strip(testing.tiny_transformer_config()), strip(testing.tiny_vae_config()), t5
    return strip(testing.RELEASE_TRANSFORMER_CONFIG), strip(testing.RELEASE_VAE_CONFIG), dict(testing.RELEASE_T5_CONFIG)


def randomize_on_device_(module: torch.nn.Module, seed: int) -> None:
    """N(0, 1/fan_in) matrices, default + N(0, 0.02²) vectors, generated where the weights live (fast on GPU)."""
    with torch.no_grad():
        for index, (_, param) in enumerate(sorted(module.named_parameters())):
            generator = torch.Generator(param.device).manual_seed(seed * 100_003 + index)
            noise = torch.empty(param.shape, device=param.device, dtype=torch.float32)
            noise.normal_(generator=generator)
            if param.ndim >= 2:
                param.copy_(noise / math.sqrt(param[0].numel()))
            else:
                param.add_((0.02 * noise).to(param.dtype))


def build_components(device: torch.device, dtype: torch.dtype, tiny: bool, tokenizer_dir: Path) -> dict:
    """Transformer, VAE, T5 encoder (random, on `device`, `dtype`), tokenizer and the release DDIM scheduler."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel, DDIMScheduler
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    transformer_config, vae_config, t5_config = configs(tiny)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters are created in bf16 directly: no fp32 copy of 10 B weights
    try:
        with torch.device(device):
            transformer = CogVideoXTransformer3DModel.from_config(transformer_config)
            vae = AutoencoderKLCogVideoX.from_config(vae_config)
            t5 = T5EncoderModel(T5Config(**{k: v for k, v in t5_config.items() if k != "architectures"}))
    finally:
        torch.set_default_dtype(previous)
    for seed, module in enumerate((transformer, vae, t5)):
        module.to(dtype)
        randomize_on_device_(module, seed)
        module.eval().requires_grad_(False)
    scheduler_config = {k: v for k, v in testing.RELEASE_SCHEDULER_CONFIG.items() if k != "snr_shift_scale"}
    return {
        "transformer": transformer,
        "vae": vae,
        "text_encoder": t5,
        "tokenizer": AutoTokenizer.from_pretrained(str(tokenizer_dir)),
        "scheduler": DDIMScheduler.from_config(scheduler_config),
    }


def write_word_tokenizer(folder: Path) -> None:
    """A small T5 (unigram) tokenizer built from a word list: the bench needs no sentencepiece package."""
    from transformers import T5Tokenizer

    words = "empty scene a the of with clean background video frame beach boy dog street night".split()
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + word, -3.0) for word in words] + [(c, -6.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=226).save_pretrained(str(folder))


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------------------------
# Timing helpers


class Timer:
    """Wall-clock phase timer that waits for the device first (so queued GPU work is counted)."""

    def __init__(self, device: torch.device):
        self.device = device

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


class StepTimer:
    """Per-step device times: CUDA events on the GPU, wall clock on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks = []

    def start(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def stop(self, begin):
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.marks.append((begin, end))
        else:
            self.marks.append(time.perf_counter() - begin)

    def seconds(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [b.elapsed_time(e) / 1000 for b, e in self.marks]
        return list(self.marks)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GiB if device.type == "cuda" else None


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------------
# One Casper window: T5 → VAE encode → steps → VAE decode


def rotary_embedding(transformer, latent_frames: int, height: int, width: int, device: torch.device):
    """CogVideoX 1.5 3-D RoPE for a window ("slice" grid, max size sample/patch)."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    config = transformer.config
    patch = config.patch_size
    cos, sin = get_3d_rotary_pos_embed(
        embed_dim=config.attention_head_dim,
        crops_coords=None,
        grid_size=(height // (8 * patch), width // (8 * patch)),
        temporal_size=(latent_frames + config.patch_size_t - 1) // config.patch_size_t,
        grid_type="slice",
        max_size=(config.sample_height // patch, config.sample_width // patch),
        device=device,
    )
    return cos, sin


def make_inputs(args, device: torch.device, dtype: torch.dtype) -> dict:
    generator = torch.Generator().manual_seed(0)
    video = torch.rand(1, 3, args.frames, args.height, args.width, generator=generator) * 2 - 1  # [B,C,T,H,W]
    latent_frames = (args.frames - 1) // 4 + 1
    mask = torch.rand(1, latent_frames, 1, args.height // 8, args.width // 8, generator=generator) * 0.7
    noise = torch.randn(1, latent_frames, 16, args.height // 8, args.width // 8, generator=generator)
    return {"video": video.to(device, dtype), "mask": mask.to(device, dtype), "noise": noise.to(device, dtype)}


def run_window(parts: dict, inputs: dict, steps: int, device: torch.device, dtype: torch.dtype) -> dict:
    """The data flow of one Casper window; returns phase seconds and per-step seconds."""
    timer, step_timer = Timer(device), StepTimer(device)
    transformer, vae, scheduler = parts["transformer"], parts["vae"], parts["scheduler"]
    phases = {}
    with torch.no_grad():
        t0 = timer.now()
        ids = parts["tokenizer"](["empty scene"], padding="max_length", max_length=226, truncation=True,
                                 return_tensors="pt").input_ids.to(device)
        prompt = parts["text_encoder"](ids)[0].to(dtype)
        t1 = timer.now()
        video_latents = vae.encode(inputs["video"]).latent_dist.mode() * vae.config.scaling_factor
        video_latents = video_latents.permute(0, 2, 1, 3, 4).to(dtype)  # [B,F,C,h,w]
        t2 = timer.now()
        latent_frames, height, width = video_latents.shape[1], inputs["video"].shape[-2], inputs["video"].shape[-1]
        rope = rotary_embedding(transformer, latent_frames, height, width, device)
        scheduler.set_timesteps(steps, device=device)
        latents = inputs["noise"]
        condition = torch.cat([inputs["mask"], video_latents], dim=2)
        for t in scheduler.timesteps:
            begin = step_timer.start()
            prediction = transformer(
                hidden_states=torch.cat([latents, condition], dim=2),
                encoder_hidden_states=prompt,
                timestep=t.expand(latents.shape[0]),
                image_rotary_emb=rope,
                return_dict=False,
            )[0]
            latents = scheduler.step(prediction.float(), t, latents, return_dict=False)[0].to(dtype)
            step_timer.stop(begin)
        t3 = timer.now()
        frames = vae.decode(latents.permute(0, 2, 1, 3, 4) / vae.config.scaling_factor).sample
        t4 = timer.now()
    phases.update(t5_s=t1 - t0, vae_encode_s=t2 - t1, steps_s=t3 - t2, vae_decode_s=t4 - t3, total_s=t4 - t0)
    phases["step_s"] = step_timer.seconds()
    phases["finite"] = bool(torch.isfinite(frames).all())
    return phases


class PhaseTimer:
    """Wall time spent inside hooked modules (device-synchronised), summed per phase name.

    Hooks are registered before the memory mode's, so a component's upload counts in its phase.
    """

    def __init__(self, device: torch.device, modules: dict[str, torch.nn.Module]):
        self.timer = Timer(device)
        self.seconds = dict.fromkeys(modules, 0.0)
        self._start: dict[str, float] = {}
        self._handles = []
        for name, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name)))

    def _pre(self, name):
        def hook(_module, _args):
            self._start[name] = self.timer.now()
        return hook

    def _post(self, name):
        def hook(_module, _args, _output):
            self.seconds[name] += self.timer.now() - self._start.pop(name)
        return hook

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)


def run_pipeline(pipeline, phases: PhaseTimer, args, steps: int, device: torch.device) -> dict:
    """One `CasperPipeline` call (one object → the background job) timed end to end, per phase and per step."""
    from casper_core import build_trimask_jobs

    generator = torch.Generator().manual_seed(0)
    video = torch.rand(args.frames, args.height, args.width, 3, generator=generator)  # [T,H,W,3] in 0..1
    masks = torch.zeros(1, args.frames, args.height, args.width)
    masks[0, :, args.height // 4: args.height // 2, args.width // 4: args.width // 2] = 1
    jobs = build_trimask_jobs(video, masks)
    timer = Timer(device)
    marks = []
    phases.reset()
    start = timer.now()
    result = pipeline(video, jobs, steps=steps, seed=0, progress=lambda step, total: marks.append(timer.now()))
    total = timer.now() - start
    step_s = [b - a for a, b in zip(marks, marks[1:])]  # the first step (uploads, first-call work) apart
    return {
        "total_s": total,
        "t5_s": phases.seconds["text_encoder"],
        "vae_encode_s": phases.seconds["vae_encoder"],
        "vae_decode_s": phases.seconds["vae_decoder"],
        "steps_s": marks[-1] - marks[0] + (step_s[0] if step_s else 0.0) if marks else 0.0,
        "step_s": step_s or [total],
        "first_step_s": marks[0] - start - phases.seconds["text_encoder"] - phases.seconds["vae_encoder"]
        if marks else None,
        "jobs": list(result.names),
        "finite": bool(torch.isfinite(result.videos).all()),
    }


def bench_mode_pipeline(mode: str, args, tokenizer_dir: Path, dtype: torch.dtype) -> dict:
    """`bench_mode` through the real `CasperPipeline` (padding, trimask latents, windows, chunked decode)."""
    from casper_core import CasperPipeline

    device = args.device
    free_memory(device)
    t0 = time.perf_counter()
    parts = build_components(device, dtype, args.tiny, tokenizer_dir)
    build_s = time.perf_counter() - t0
    if not args.no_vae_tiling:
        parts["vae"].enable_tiling()
        parts["vae"].enable_slicing()
    attention = set_attention_backend(parts["transformer"], "auto", device)
    phases = PhaseTimer(device, {"text_encoder": parts["text_encoder"], "vae_encoder": parts["vae"].encoder,
                                 "vae_decoder": parts["vae"].decoder})
    t0 = time.perf_counter()
    plan = apply_memory_mode(
        {name: parts[name] for name in ("text_encoder", "vae", "transformer")}, mode, device, dtype
    )
    setup_s = time.perf_counter() - t0
    pipeline = CasperPipeline(**parts)
    pipeline.memory_plan = plan
    pipeline.set_execution_device(plan.execution_device)
    steps = min(args.steps, args.offload_steps) if mode in ("group_offload", "sequential_offload") else args.steps
    steps = max(steps, 2)
    run_pipeline(pipeline, phases, args, 1, device)  # warm-up: kernels chosen, pinned buffers touched
    reset_peak(device)
    result = run_pipeline(pipeline, phases, args, steps, device)
    result["peak_gib"] = peak_gib(device)
    step_times = result.pop("step_s")
    median = statistics.median(step_times)
    fixed = result["total_s"] - result["steps_s"]
    result.update(
        flow="pipeline",
        mode=mode,
        attention=attention,
        steps=steps,
        step_median_s=median,
        steps50_s=50 * median,
        end_to_end50_s=fixed + result["steps_s"] * 50 / steps,
        build_s=build_s,
        setup_s=setup_s,
        transformer_params=parameter_count(parts["transformer"]),
    )
    del parts, plan, pipeline
    free_memory(device)
    return result


def bench_mode(mode: str, args, tokenizer_dir: Path, dtype: torch.dtype) -> dict:
    device = args.device
    free_memory(device)
    t0 = time.perf_counter()
    parts = build_components(device, dtype, args.tiny, tokenizer_dir)
    build_s = time.perf_counter() - t0
    if not args.no_vae_tiling:
        parts["vae"].enable_tiling()
        parts["vae"].enable_slicing()
    attention = set_attention_backend(parts["transformer"], "auto", device)
    t0 = time.perf_counter()
    plan = apply_memory_mode(
        {name: parts[name] for name in ("text_encoder", "vae", "transformer")}, mode, device, dtype
    )
    setup_s = time.perf_counter() - t0
    inputs = make_inputs(args, device, dtype)
    steps = min(args.steps, args.offload_steps) if mode in ("group_offload", "sequential_offload") else args.steps
    run_window(parts, inputs, 1, device, dtype)  # warm-up: kernels chosen, pinned buffers touched
    plan.release()
    reset_peak(device)
    result = run_window(parts, inputs, steps, device, dtype)
    plan.release()
    result["peak_gib"] = peak_gib(device)
    steps = result.pop("step_s")
    median = statistics.median(steps)
    fixed = result["t5_s"] + result["vae_encode_s"] + result["vae_decode_s"]
    result.update(
        flow="components",
        mode=mode,
        attention=attention,
        steps=len(steps),
        step_median_s=median,
        step_first_s=steps[0],
        steps50_s=50 * median,
        end_to_end50_s=fixed + result["steps_s"] * 50 / len(steps),
        build_s=build_s,
        setup_s=setup_s,
        transformer_params=parameter_count(parts["transformer"]),
    )
    del parts, plan, inputs
    free_memory(device)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Speed variants of the transformer step


def bench_variant(variant: str, parts: dict, inputs: dict, args, dtype: torch.dtype) -> dict:
    from casper_core.attention import SDPAKernelAttnProcessor
    from casper_core.fp8_compute import use_fp8_matmuls
    from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0, FusedCogVideoXAttnProcessor2_0
    from torch.nn.attention import SDPBackend, sdpa_kernel

    device = args.device
    transformer = parts["transformer"]
    fused = variant.endswith("_fused")
    if variant == "sdpa":
        transformer.set_attn_processor(CogVideoXAttnProcessor2_0())
    elif variant == "sdpa_flash":
        transformer.set_attn_processor(SDPAKernelAttnProcessor([SDPBackend.FLASH_ATTENTION]))
    else:
        set_attention_backend(transformer, "sdpa_cudnn" if device.type == "cuda" else "auto", device, fuse_qkv=fused)
    replaced = []
    if variant.startswith("fp8"):
        replaced = use_fp8_matmuls(transformer)
    if "compile" in variant:
        # torch.compile(module) (not Module.compile, a no-op on some torch builds); identical blocks share one graph
        blocks = transformer.transformer_blocks
        for limit in ("recompile_limit", "cache_size_limit"):  # room for one graph per block if guards split them
            if hasattr(torch._dynamo.config, limit):
                setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 2 * len(blocks)))
        for index in range(len(blocks)):
            blocks[index] = torch.compile(blocks[index])

    latent_frames = inputs["noise"].shape[1]
    rope = rotary_embedding(transformer, latent_frames, args.height, args.width, device)
    prompt = torch.randn(1, 226, transformer.config.text_embed_dim, device=device, dtype=dtype)
    hidden = torch.cat([inputs["noise"], inputs["mask"], inputs["noise"]], dim=2)

    def step():
        return transformer(hidden_states=hidden, encoder_hidden_states=prompt,
                           timestep=torch.tensor([999], device=device), image_rotary_emb=rope, return_dict=False)[0]

    timer = Timer(device)
    reset_peak(device)
    attention = "processor"
    outside = contextlib.nullcontext  # the kernel-choice context around each call (fallback only)
    with torch.no_grad():
        t0 = timer.now()
        try:
            first = step()  # includes compilation for the compiled variants
        except Exception as error:
            if "compile" not in variant:
                raise
            # Fallback: plain processors inside the compiled blocks, kernel choice from a context around the call.
            print(f"{variant}: compiling with the kernel-selecting processor failed ({type(error).__name__}: "
                  f"{str(error)[:200]}); retrying with the SDPA kernel chosen outside the compiled blocks", flush=True)
            torch._dynamo.reset()
            transformer.set_attn_processor(FusedCogVideoXAttnProcessor2_0() if fused else CogVideoXAttnProcessor2_0())
            kernels = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                       SDPBackend.MATH] if device.type == "cuda" else [SDPBackend.MATH]
            outside = functools.partial(sdpa_kernel, kernels, set_priority=True)
            attention = "outer context"
            t0 = timer.now()
            with outside():
                first = step()
        first_s = timer.now() - t0
        with outside():
            step()  # second warm-up (cuDNN plans, autotuned kernels)
            step_timer = StepTimer(device)
            for _ in range(args.variant_steps):
                begin = step_timer.start()
                out = step()
                step_timer.stop(begin)
    times = step_timer.seconds()
    median = statistics.median(times)
    return {
        "variant": variant,
        "attention": attention,
        "step_median_s": median,
        "step_min_s": min(times),
        "steps50_s": 50 * median,
        "first_call_s": first_s,
        "compile_s": max(first_s - median, 0.0) if "compile" in variant else None,
        "peak_gib": peak_gib(device),
        "fp8_linears": len(replaced),
        "finite": bool(torch.isfinite(first).all() and torch.isfinite(out).all()),
    }


def bench_variants(args, tokenizer_dir: Path, dtype: torch.dtype) -> list[dict]:
    results = []
    for variant in args.variants:
        free_memory(args.device)
        torch._dynamo.reset()
        parts = build_components(args.device, dtype, args.tiny, tokenizer_dir)
        del parts["text_encoder"], parts["vae"]  # the step alone
        free_memory(args.device)
        inputs = make_inputs(args, args.device, dtype)
        try:
            results.append(bench_variant(variant, parts, inputs, args, dtype))
        except Exception as error:  # one failing variant (e.g. a kernel missing on this GPU) must not lose the rest
            results.append({"variant": variant, "error": f"{type(error).__name__}: {error}"[:400]})
        del parts, inputs
    return results


# ----------------------------------------------------------------------------------------------------------------


def fmt(value, digits=2):
    return "–" if value is None else f"{value:.{digits}f}"


def print_tables(report: dict) -> None:
    print()
    print(f"device: {report['device_name']}  torch {report['torch']}  diffusers {report['diffusers']}  "
          f"{report['frames']} frames {report['height']}x{report['width']}, bf16")
    if report["modes"]:
        flow = report["modes"][0].get("flow", "")
        print(f"\nmemory modes ({flow}: T5 → VAE encode → steps → VAE decode; e2e@50 = total with 50 steps)")
        header = (f"{'mode':<22}{'s/step':>8}{'50 steps s':>11}{'T5 s':>7}{'enc s':>7}{'dec s':>7}"
                  f"{'e2e@50 s':>10}{'peak GiB':>10}{'steps run':>10}")
        print(header)
        print("-" * len(header))
        for r in report["modes"]:
            if "error" in r:
                print(f"{r['mode']:<22} ERROR {r['error']}")
                continue
            print(f"{r['mode']:<22}{fmt(r['step_median_s'], 3):>8}{fmt(r['steps50_s'], 1):>11}{fmt(r['t5_s']):>7}"
                  f"{fmt(r['vae_encode_s']):>7}{fmt(r['vae_decode_s']):>7}{fmt(r['end_to_end50_s'], 1):>10}"
                  f"{fmt(r['peak_gib'], 1):>10}{r['steps']:>10}")
    if report["variants"]:
        print(f"\nspeed variants (transformer step only, gpu placement; anchor: plain SDPA {ANCHOR_STEP_S} s/step)")
        header = f"{'variant':<20}{'s/step':>8}{'50 steps s':>11}{'compile s':>10}{'peak GiB':>10}{'fp8 linears':>12}"
        print(header)
        print("-" * len(header))
        for r in report["variants"]:
            if "error" in r:
                print(f"{r['variant']:<20} ERROR {r['error']}")
                continue
            print(f"{r['variant']:<20}{fmt(r['step_median_s'], 3):>8}{fmt(r['steps50_s'], 1):>11}"
                  f"{fmt(r['compile_s'], 1):>10}{fmt(r['peak_gib'], 1):>10}{r['fp8_linears']:>12}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    import diffusers

    dtype = torch.bfloat16
    device = args.device
    report = {
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "tiny": args.tiny,
        "frames": args.frames,
        "height": args.height,
        "width": args.width,
        "dtype": "bf16",
        "vae_tiling": not args.no_vae_tiling,
        "modes": [],
        "variants": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dir = Path(scratch) / "tokenizer"
        write_word_tokenizer(tokenizer_dir)  # T5 vocabulary is irrelevant to speed; no download possible
        for mode in args.modes:
            try:
                run = bench_mode_pipeline if args.flow == "pipeline" else bench_mode
                report["modes"].append(run(mode, args, tokenizer_dir, dtype))
            except Exception as error:
                report["modes"].append({"mode": mode, "error": f"{type(error).__name__}: {error}"[:400]})
            print(json.dumps(report["modes"][-1]), flush=True)
        report["variants"] = bench_variants(args, tokenizer_dir, dtype)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "x") as handle:  # "x": never overwrite
        json.dump(report, handle, indent=2)
    print_tables(report)
    return report


if __name__ == "__main__":
    main()
