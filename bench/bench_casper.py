"""Benchmark Casper's real-size architecture (random weights): speed, peak GPU memory and drift per memory mode and
speed option.

Architecture: the CogVideoX-Fun-V1.5-5b-InP transformer (42 layers, 48 heads × 64, in_channels 33, patch 2 × 2 × 2,
text 226 × 4096), the CogVideoX 1.5 VAE, a T5 v1.1 XXL-sized encoder; 85 frames at 384×672 (22 latent frames,
11 088 video tokens + 226 text tokens), 50 DDIM steps, bf16. Weights are built directly on the device and filled with
small random normal values (speed does not depend on the values; zeros could take shortcuts).

Everything runs through the real `CasperPipeline` (T5 prompt encoding, VAE encode, DDIM steps, VAE decode), timed
per phase, with peak GPU memory:

1. speed options (`--options`, in `--options-mode`, default "gpu"): each combination of the loader's options —
   ``fp8`` (fp8_compute), ``sage`` (attention_backend "sage"), ``compile`` — set up as `load_casper_components` does,
   ``sdpa`` for none; ``torchao`` swaps our fp8 layers for torchao's (comparison only). Each runs `--option-steps`
   steps (default 50) from the same noise, and its decoded video is compared with the first combination's (the
   bf16 SDPA baseline): mean / max absolute difference and PSNR. One transformer call per combination is
   profiled (torch.profiler): device time in attention, matrix products and the rest (norms, RoPE, modulation,
   casts: the glue).
2. memory modes (`--modes` × `--mode-options`): `--steps` steps each (offload modes capped by `--offload-steps`);
   compile is dropped where the loader refuses it with that mode.

"compile s" is the first step of the first call minus the median step (compilation and first-call work). Per-step
times are medians of the pipeline's step intervals after a warm-up call; "50 st s" is 50 × the median step and
"e2e@50" the whole call with 50 steps.

    python bench/bench_casper.py --device cuda --modes none --out bench/results/casper_options.json   # options
    python bench/bench_casper.py --device cuda --options none --quick --mode-options sdpa,fp8+compile \
        --out bench/results/casper_modes.json                                                          # modes
    python bench/bench_casper.py --device cpu --tiny --out /tmp/casper_tiny.json          # end-to-end check, no GPU
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

# Run from an installed checkout (`pip install -e .`) or with `PYTHONPATH=.` from the repository root.
from casper_core import release_format, testing  # noqa: E402
from casper_core.attention import set_attention_backend  # noqa: E402
from casper_core.memory import MEMORY_MODES, apply_memory_mode  # noqa: E402
from casper_core.speed import COMPILE_UNSUPPORTED_MODES  # noqa: E402

# Every combination of the loader's speed options, the baseline first (drift is measured against it).
OPTIONS = ("sdpa", "sdpa+compile", "fp8", "fp8+compile", "sage", "sage+compile", "fp8+sage", "fp8+sage+compile")
GiB = 1024**3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny widths/depths, 5 frames at 32x48, 2 steps (CPU check)")
    parser.add_argument("--quick", action="store_true",
                        help="8 steps per mode and per option combination; 50-step figures extrapolated")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps per memory mode (default 50; quick 8)")
    parser.add_argument("--offload-steps", type=int, default=10,
                        help="cap on timed steps for group/sequential offload (50-step figures extrapolated)")
    parser.add_argument("--option-steps", type=int, default=None,
                        help="steps per speed option combination (default 50; quick 8; tiny 2)")
    parser.add_argument("--frames", type=int, default=None, help="video frames (4k+1 with k odd; default 85)")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--modes", default=None, help=f"comma list from {','.join(MEMORY_MODES)} or 'none'")
    parser.add_argument("--options", default=None,
                        help=f"comma list of speed option combinations (default {','.join(OPTIONS)}; also "
                             "torchao[+compile]) or 'none'")
    parser.add_argument("--options-mode", default="gpu", choices=MEMORY_MODES,
                        help="memory mode of the speed option runs")
    parser.add_argument("--mode-options", default="sdpa",
                        help="comma list of speed option combinations run in every memory mode (default sdpa)")
    parser.add_argument("--no-profile", action="store_true", help="skip the kernel profile of each option run")
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
    args.option_steps = args.option_steps or (2 if args.tiny else 8 if args.quick else 50)
    args.profile = not args.no_profile
    latent_frames = (args.frames - 1) // 4 + 1
    if (args.frames - 1) % 4 or latent_frames % 2:
        parser.error(f"--frames must be 4k+1 with an even latent count k+1 (e.g. 85, 21, 5), got {args.frames}")
    if args.height % 16 or args.width % 16:
        parser.error("--height and --width must be multiples of 16")
    if args.modes is None:
        args.modes = list(MEMORY_MODES)
    else:
        args.modes = [] if args.modes == "none" else args.modes.split(",")
    unknown = [m for m in args.modes if m not in MEMORY_MODES]
    if unknown:
        parser.error(f"unknown --modes {unknown}; choose from {MEMORY_MODES}")
    cpu_options = ("sdpa", "fp8")  # the CPU check: compile needs a C++ toolchain, sage a GPU
    if args.options is None:
        args.options = list(cpu_options if args.device.type == "cpu" else OPTIONS)
    else:
        args.options = [] if args.options == "none" else args.options.split(",")
    args.mode_options = args.mode_options.split(",")
    for name in (*args.options, *args.mode_options):
        try:
            SpeedChoice.parse(name)
        except ValueError as error:
            parser.error(str(error))
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
    return (strip(release_format.RELEASE_TRANSFORMER_CONFIG), strip(release_format.RELEASE_VAE_CONFIG),
            dict(release_format.RELEASE_T5_CONFIG))


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
    # The default initialisation draws from the global RNG and `randomize_on_device_` adds to the vectors' defaults:
    # seed it, so every build (and so every compared run) has the same weights.
    torch.manual_seed(0)
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
    scheduler_config = {k: v for k, v in release_format.RELEASE_SCHEDULER_CONFIG.items() if k != "snr_shift_scale"}
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
        "video": result.videos,  # [J,T,H,W,3] on the CPU, for the drift (not written to the JSON)
    }


def bench_mode_pipeline(mode: str, args, tokenizer_dir: Path, dtype: torch.dtype, choice=None, *,
                        profile: bool = False, steps: int | None = None) -> dict:
    """`bench_mode` through the real `CasperPipeline` (padding, trimask latents, windows, chunked decode), with the
    speed options `choice` (a `SpeedChoice`; None = none) and, with `profile` in the "gpu" mode, a kernel profile."""
    from casper_core import CasperPipeline

    device = args.device
    free_memory(device)
    t0 = time.perf_counter()
    parts = build_components(device, dtype, args.tiny, tokenizer_dir)
    build_s = time.perf_counter() - t0
    if not args.no_vae_tiling:
        parts["vae"].enable_tiling()
        parts["vae"].enable_slicing()
    choice = choice or SpeedChoice()
    phases = PhaseTimer(device, {"text_encoder": parts["text_encoder"], "vae_encoder": parts["vae"].encoder,
                                 "vae_decoder": parts["vae"].decoder})
    t0 = time.perf_counter()
    applied = apply_choice(parts["transformer"], choice, mode, device)
    plan = apply_memory_mode(
        {name: parts[name] for name in ("text_encoder", "vae", "transformer")}, mode, device, dtype
    )
    setup_s = time.perf_counter() - t0
    pipeline = CasperPipeline(**parts)
    pipeline.memory_plan = plan
    pipeline.set_execution_device(plan.execution_device)
    if steps is None:
        offload = mode in ("group_offload", "sequential_offload")
        steps = min(args.steps, args.offload_steps) if offload else args.steps
    steps = max(steps, 2)
    warm = run_pipeline(pipeline, phases, args, 1, device)  # warm-up: compiled, kernels chosen, buffers pinned
    reset_peak(device)
    result = run_pipeline(pipeline, phases, args, steps, device)
    result["peak_gib"] = peak_gib(device)
    step_times = result.pop("step_s")
    median = statistics.median(step_times)
    fixed = result["total_s"] - result["steps_s"]
    result.update(
        flow="pipeline",
        mode=mode,
        options=choice.name,
        **applied,
        steps=steps,
        step_median_s=median,
        steps50_s=50 * median,
        end_to_end50_s=fixed + result["steps_s"] * 50 / steps,
        compile_s=max(warm["first_step_s"] - median, 0.0) if warm["first_step_s"] is not None else None,
        build_s=build_s,
        setup_s=setup_s,
        transformer_params=parameter_count(parts["transformer"]),
    )
    if profile and mode == "gpu":
        result["profile"] = kernel_profile(parts["transformer"], args, device, dtype)
    del parts, plan, pipeline
    free_memory(device)
    return result


def bench_mode(mode: str, args, tokenizer_dir: Path, dtype: torch.dtype, choice=None) -> dict:
    """One memory mode through a bare component chain (no pipeline), with the speed options `choice`."""
    device = args.device
    free_memory(device)
    t0 = time.perf_counter()
    parts = build_components(device, dtype, args.tiny, tokenizer_dir)
    build_s = time.perf_counter() - t0
    if not args.no_vae_tiling:
        parts["vae"].enable_tiling()
        parts["vae"].enable_slicing()
    choice = choice or SpeedChoice()
    t0 = time.perf_counter()
    applied = apply_choice(parts["transformer"], choice, mode, device)
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
        options=choice.name,
        **applied,
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
# Speed options (the loader's compile / fp8_compute / attention_backend) through the real pipeline


@dataclass(frozen=True)
class SpeedChoice:
    """One combination of speed options, named like ``fp8+sage+compile`` (``sdpa`` = none of them).

    ``torchao`` is fp8 row-wise compute by torchao's ``Float8DynamicActivationFloat8WeightConfig`` instead of
    `casper_core.fp8_compute` (a comparison only; the loader uses ours).
    """

    fp8: bool = False
    sage: bool = False
    compile: bool = False
    torchao: bool = False

    @classmethod
    def parse(cls, name: str) -> "SpeedChoice":
        parts = set(name.split("+")) - {"sdpa"}
        unknown = parts - {"fp8", "sage", "compile", "torchao"}
        if unknown or (("fp8" in parts) and ("torchao" in parts)):
            raise ValueError(f"unknown speed option combination {name!r}: join fp8|torchao, sage, compile with '+', "
                             "or 'sdpa' for none")
        return cls(**{part: True for part in parts})

    @property
    def name(self) -> str:
        parts = [p for p in ("fp8", "torchao", "sage", "compile") if getattr(self, p)]
        return "+".join(parts) or "sdpa"

    @property
    def attention_backend(self) -> str:
        return "sage" if self.sage else "auto"


def apply_choice(transformer, choice: SpeedChoice, memory_mode: str, device: torch.device) -> dict:
    """Set up `transformer` as `load_casper_components` does for these options; returns what was applied."""
    from casper_core.speed import apply_speed_options, check_speed_options

    if device.type == "cuda":  # on the CPU the bench runs the code paths the loader would refuse (a check only)
        check_speed_options(compile=choice.compile, fp8_compute=choice.fp8, memory_mode=memory_mode, device=device)
    attention = set_attention_backend(transformer, choice.attention_backend, device,
                                      fuse_qkv=choice.compile or choice.fp8 or choice.torchao)
    fp8_linears = 0
    if choice.torchao:
        fp8_linears = torchao_fp8(transformer)
    plan = apply_speed_options(transformer, compile=choice.compile, fp8_compute=choice.fp8, quantize_device=device)
    return {"attention": attention, "fp8_linears": fp8_linears or len(plan.fp8_linears)}


def torchao_fp8(transformer) -> int:
    """torchao's dynamic fp8 row-wise quantisation of the same matrices as `casper_core.fp8_compute`."""
    import re

    from casper_core.fp8_compute import DEFAULT_PATTERN
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    pattern = re.compile(DEFAULT_PATTERN)
    chosen = [n for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear) and pattern.search(n)]
    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
              filter_fn=lambda module, name: name in chosen)
    return len(chosen)


def kernel_profile(transformer, args, device: torch.device, dtype: torch.dtype, top: int = 8) -> dict:
    """Device time of one transformer call split into attention, matrix products and the rest (the glue)."""
    from torch.profiler import ProfilerActivity, profile

    inputs = make_inputs(args, device, dtype)
    rope = rotary_embedding(transformer, inputs["noise"].shape[1], args.height, args.width, device)
    prompt = torch.randn(1, 226, transformer.config.text_embed_dim, device=device, dtype=dtype)
    hidden = torch.cat([inputs["noise"], inputs["mask"], inputs["noise"]], dim=2)

    def step():
        return transformer(hidden_states=hidden, encoder_hidden_states=prompt,
                           timestep=torch.tensor([999], device=device), image_rotary_emb=rope, return_dict=False)

    activities = [ProfilerActivity.CUDA] if device.type == "cuda" else [ProfilerActivity.CPU]
    with torch.no_grad():
        step()
        with profile(activities=activities) as prof:
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    totals = {"attention": 0.0, "gemm": 0.0, "other": 0.0}
    named = {"attention": {}, "other": {}}
    kernel_type = torch.autograd.DeviceType.CUDA if device.type == "cuda" else torch.autograd.DeviceType.CPU
    for event in prof.key_averages():
        if event.device_type != kernel_type:
            continue
        micros = getattr(event, "self_device_time_total", None)
        if micros is None or device.type != "cuda":
            micros = event.self_cpu_time_total
        kind = kernel_kind(event.key)
        totals[kind] += micros / 1e6
        if kind != "gemm":
            named[kind][event.key] = named[kind].get(event.key, 0.0) + micros / 1e6
    total = sum(totals.values())
    return {
        "total_s": total,
        **{f"{kind}_s": seconds for kind, seconds in totals.items()},
        **{f"{kind}_share": seconds / total if total else None for kind, seconds in totals.items()},
        **{f"top_{kind}": sorted(((name[:90], round(sec * 1e3, 3)) for name, sec in kernels.items()),
                                 key=lambda item: -item[1])[:top] for kind, kernels in named.items()},
    }


_ATTENTION_KERNELS = ("flash", "fmha", "attention", "attn", "sdpa", "mha")
_GEMM_KERNELS = ("gemm", "matmul", "xmma", "cutlass", "nvjet", "scaled_mm", "wgmma", "cublas", "aten::mm",
                 "aten::addmm", "aten::linear", "triton_tem")


def kernel_kind(name: str) -> str:
    """``"attention"``, ``"gemm"`` or ``"other"`` for a profiler kernel name.

    Inductor names its generated kernels after the operations they fuse: a pointwise or reduction kernel that
    prepares the attention's inputs (RoPE, q/k norms, the layout change) is called ``triton_poi_fused_..._attention_...``
    although it does no attention; only its template kernels (``triton_tem_``) are matrix products."""
    lowered = name.lower()
    if lowered.startswith("triton_tem"):
        return "gemm"
    if lowered.startswith(("triton_poi", "triton_red", "triton_per")):
        return "other"
    if any(key in lowered for key in _ATTENTION_KERNELS):
        return "attention"
    if any(key in lowered for key in _GEMM_KERNELS):
        return "gemm"
    return "other"


def drift(video: torch.Tensor, baseline: torch.Tensor) -> dict:
    """Difference of a decoded video (0..1) from the baseline's: mean and max absolute, PSNR in dB."""
    difference = (video.float() - baseline.float()).abs()
    mse = float(difference.square().mean())
    return {"mean_abs": float(difference.mean()), "max_abs": float(difference.max()),
            "psnr_db": 10 * math.log10(1 / mse) if mse > 0 else float("inf")}


def bench_options(args, tokenizer_dir: Path, dtype: torch.dtype) -> list[dict]:
    """Every speed option combination in `args.options` through the pipeline in `args.options_mode`, with drift
    of the decoded output against the first combination (``sdpa``: bf16 SDPA)."""
    results, baseline, seen = [], None, set()
    for name in args.options:
        choice = SpeedChoice.parse(name)
        # A combination named twice runs again in the same process: its compile then hits Inductor's caches.
        repeat = choice in seen
        seen.add(choice)
        torch._dynamo.reset()
        try:
            result = bench_mode_pipeline(args.options_mode, args, tokenizer_dir, dtype, choice,
                                         profile=args.profile, steps=args.option_steps)
        except Exception as error:  # one failing combination (a kernel missing here) must not lose the rest
            result = {"options": choice.name, "mode": args.options_mode,
                      "error": f"{type(error).__name__}: {error}"[:400]}
        result["repeat"] = repeat
        video = result.pop("video", None)
        if video is not None:
            if baseline is None:
                baseline = video
                result["baseline"] = True
            result["drift"] = drift(video, baseline)
        results.append(result)
        print(json.dumps(result), flush=True)
    return results


# ----------------------------------------------------------------------------------------------------------------


def fmt(value, digits=2):
    return "–" if value is None else f"{value:.{digits}f}"


def print_tables(report: dict) -> None:
    print()
    print(f"device: {report['device_name']}  torch {report['torch']}  diffusers {report['diffusers']}  "
          f"{report['frames']} frames {report['height']}x{report['width']}, bf16")
    rows = [("memory modes", report["modes"]), ("speed options", report["options"])]
    for title, results in rows:
        if not results:
            continue
        print(f"\n{title} (pipeline: T5 → VAE encode → steps → VAE decode; e2e@50 = total with 50 steps; "
              f"compile s = first step of the first call − median step; drift vs the first sdpa row)")
        header = (f"{'mode':<22}{'options':<20}{'s/step':>8}{'50 st s':>8}{'e2e@50':>8}{'peak GiB':>9}"
                  f"{'compile s':>10}{'steps':>6}{'mean|Δ|':>9}{'max|Δ|':>8}{'PSNR dB':>9}")
        print(header)
        print("-" * len(header))
        for r in results:
            options = r.get("options", "sdpa") + (" again" if r.get("repeat") else "")
            label = f"{r.get('mode', ''):<22}{options:<20}"
            if "error" in r:
                print(f"{label}ERROR {r['error']}")
                continue
            d = r.get("drift") or {}
            print(f"{label}{fmt(r['step_median_s'], 3):>8}{fmt(r['steps50_s'], 1):>8}"
                  f"{fmt(r['end_to_end50_s'], 1):>8}{fmt(r['peak_gib'], 1):>9}{fmt(r.get('compile_s'), 1):>10}"
                  f"{r['steps']:>6}{fmt(d.get('mean_abs'), 4):>9}{fmt(d.get('max_abs'), 3):>8}"
                  f"{fmt(d.get('psnr_db'), 1):>9}")
    profiles = [(r["options"], r["profile"]) for r in report["options"] if r.get("profile") and not r.get("repeat")]
    if profiles:
        print("\none transformer call, device time by kind (torch.profiler)")
        header = f"{'options':<20}{'total ms':>9}{'attention':>11}{'GEMM':>9}{'other':>9}"
        print(header)
        print("-" * len(header))
        for name, prof in profiles:
            print(f"{name:<20}{prof['total_s'] * 1e3:>9.1f}{fmt(prof['attention_share'] * 100, 1):>10}%"
                  f"{fmt(prof['gemm_share'] * 100, 1):>8}%{fmt(prof['other_share'] * 100, 1):>8}%")
        for name, prof in profiles:
            print(f"  {name}: largest 'other' kernels (ms): "
                  + "; ".join(f"{kernel} {ms}" for kernel, ms in prof["top_other"][:5]))


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
        "options": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dir = Path(scratch) / "tokenizer"
        write_word_tokenizer(tokenizer_dir)  # T5 vocabulary is irrelevant to speed; no download possible
        report["options"] = bench_options(args, tokenizer_dir, dtype)
        for mode in args.modes:
            for name in args.mode_options:
                choice = SpeedChoice.parse(name)
                if choice.compile and mode in COMPILE_UNSUPPORTED_MODES:  # the loader refuses it: run without
                    choice = SpeedChoice(fp8=choice.fp8, sage=choice.sage, torchao=choice.torchao)
                torch._dynamo.reset()
                try:
                    run = bench_mode_pipeline if args.flow == "pipeline" else bench_mode
                    result = run(mode, args, tokenizer_dir, dtype, choice)
                except Exception as error:
                    result = {"mode": mode, "options": choice.name, "error": f"{type(error).__name__}: {error}"[:400]}
                result.pop("video", None)
                report["modes"].append(result)
                print(json.dumps(result), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "x") as handle:  # "x": never overwrite
        json.dump(report, handle, indent=2)
    print_tables(report)
    return report


if __name__ == "__main__":
    main()
