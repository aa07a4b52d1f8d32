"""Casper fine-tuning speed and memory on one GPU: the real-size transformer with random weights.

For each mode (LoRA, full) and crop size it builds the CogVideoX-Fun-V1.5-5b-InP transformer and VAE from the
release configs (`casper_core.release_format`, random weights), and times the training step the trainer
runs (`casper_core.training`: the pipeline's 33-channel condition with the VAE, the v-prediction loss, backward,
gradient clipping, AdamW) on random clips of --frames frames (padded to 85 as in training), in bf16 autocast with
gradient checkpointing. It reports samples/s, seconds per step and peak memory, and the largest micro-batch that
fits (doubling until out of memory, up to --max-batch).

    python bench/bench_training.py --out bench_training.json           # on a GPU: LoRA and full, 128² and 384×672
    python bench/bench_training.py --tiny --out tiny.json              # the same code path at tiny size on the CPU

Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from pathlib import Path

import torch

from casper_core.release_format import RELEASE_SCHEDULER_CONFIG, RELEASE_TRANSFORMER_CONFIG, RELEASE_VAE_CONFIG
from casper_core.testing import tiny_transformer_config, tiny_vae_config
from casper_core.training.conditioning import TrimaskConditioning
from casper_core.training.config import TrainConfig
from casper_core.training.components import training_scheduler
from casper_core.training.objective import diffusion_loss
from casper_core.training.trainer import make_optimizer, prepare_transformer


def build(mode: str, tiny: bool, device: torch.device):
    """Transformer (trainable as `mode`), frozen VAE, scheduler, prompt embeddings; random weights."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    transformer_config = tiny_transformer_config(text_embed_dim=32) if tiny else dict(RELEASE_TRANSFORMER_CONFIG)
    vae_config = tiny_vae_config() if tiny else dict(RELEASE_VAE_CONFIG)
    flags = {k: transformer_config.pop(k) for k in ("add_noise_in_inpaint_model",)}
    strip = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    bf16 = device.type == "cuda"
    with torch.device(device):
        transformer = CogVideoXTransformer3DModel.from_config(strip(transformer_config))
        vae = AutoencoderKLCogVideoX.from_config(strip(vae_config))
    transformer.register_to_config(**flags)
    if mode == "lora" and bf16:
        transformer.to(torch.bfloat16)  # the frozen base in bf16; adapters are float32
    vae.to(torch.bfloat16 if bf16 else torch.float32).requires_grad_(False).eval()
    config = TrainConfig(mode=mode, gradient_checkpointing=True, mixed_precision="bf16" if bf16 else "no",
                         learning_rate=1e-5 if mode == "full" else 1e-4)
    prepare_transformer(transformer, config)
    prompt = torch.randn(1, 226, transformer.config.text_embed_dim, device=device)
    return transformer, vae, training_scheduler(RELEASE_SCHEDULER_CONFIG), prompt, config


def time_steps(transformer, vae, scheduler, prompt, config, batch: int, frames: int, size, steps: int, device):
    """Seconds per optimiser step (after one warm-up step) and peak memory in GiB for micro-batch `batch`."""
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config, device)
    conditioning = TrimaskConditioning(transformer, vae, device)
    generator = torch.Generator(device).manual_seed(0)
    data = {
        "input": torch.rand(batch, frames, 3, *size, device=device, generator=generator),
        "target": torch.rand(batch, frames, 3, *size, device=device, generator=generator),
        "trimask": (torch.rand(batch, frames, 1, *size, device=device, generator=generator) * 2).round() / 2,
    }
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.mixed_precision == "bf16")

    def step():
        latents, condition, rotary = conditioning(data, generator)
        with autocast:
            loss = diffusion_loss(transformer, scheduler, latents, condition, prompt, rotary, generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None  # CPU: not tracked
    del optimizer
    return seconds, peak


def _gib(value) -> str:
    return "n/a" if value is None else f"{value:7.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["lora", "full"], choices=("lora", "full"))
    parser.add_argument("--sizes", nargs="+", default=["128x128", "384x672"], help="crop sizes HxW")
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (after one warm-up)")
    parser.add_argument("--max-batch", type=int, default=16, help="largest micro-batch tried")
    parser.add_argument("--tiny", action="store_true", help="tiny model configs (CPU check of the script)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write (must not exist)")
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists; pick a new file")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for mode in args.modes:
        transformer, vae, scheduler, prompt, config = build(mode, args.tiny, device)
        trainable = sum(p.numel() for p in transformer.parameters() if p.requires_grad)
        for size_text in args.sizes:
            size = tuple(int(v) for v in size_text.lower().split("x"))
            best = None
            batch = 1
            while batch <= args.max_batch:
                try:
                    seconds, peak = time_steps(transformer, vae, scheduler, prompt, config, batch, args.frames, size,
                                               args.steps, device)
                except torch.OutOfMemoryError:
                    break
                finally:
                    for param in transformer.parameters():
                        param.grad = None
                    gc.collect()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                row = {"mode": mode, "size": size_text, "frames": args.frames, "micro_batch": batch,
                       "seconds_per_step": seconds, "samples_per_s": batch / seconds, "peak_gib": peak,
                       "trainable_params": trainable}
                rows.append(row)
                best = row
                print(f"{mode:5s} {size_text:>8s} batch {batch:3d}: {seconds:8.3f} s/step "
                      f"{batch / seconds:8.3f} samples/s  peak {_gib(peak)} GiB", flush=True)
                batch *= 2
            if best is not None:
                best["largest_batch_that_fits"] = True
        del transformer, vae
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print("\nmode   size      largest micro-batch  samples/s  peak GiB")
    for row in rows:
        if row.get("largest_batch_that_fits"):
            print(f"{row['mode']:5s} {row['size']:>9s} {row['micro_batch']:20d} {row['samples_per_s']:10.3f} "
                  f"{_gib(row['peak_gib']):>9s}")
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    args.out.write_text(json.dumps({"device": device_name, "torch": torch.__version__, "tiny": args.tiny,
                                    "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
