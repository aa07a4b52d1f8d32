"""The fine-tuning loop: Casper from CogVideoX-Fun-V1.5-5b-InP, full or LoRA, on one GPU or several (accelerate).

One optimiser step sees ``train.batch_size`` examples: ``micro_batch_size`` per process and forward pass, gradients
accumulated over the passes (without synchronising processes until the last one). Each process draws its own
examples from the shared `MixtureSampler` stream, so the run is a function of the seed, whatever the process count,
and resuming from a checkpoint continues the stream where it stopped. Launch on several GPUs with
``accelerate launch --num_processes N -m casper_core.training.train ...`` (DDP; ``train.distributed = "fsdp"`` shards
the full fine-tune per transformer block with accelerate's FSDP plugin).

A run writes into a new folder::

    <run>/config.json                       the config used
    <run>/losses.jsonl                      {"step", "loss", "lr"} per optimiser step
    <run>/checkpoints/step_NNNNNN/          see `casper_core.training.checkpoints`
    <run>/casper_transformer.safetensors    the final Casper weights (Load Casper Model → casper_weights)
    <run>/lora/                             the final LoRA (LoRA runs)
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .checkpoints import CASPER_FILE, load_trainable, read_step, save_trainable, write_checkpoint
from .components import TrainingComponents, load_training_components
from .conditioning import TrimaskConditioning
from .config import TrainingConfig
from .dataset import MixtureSampler, TupleDataset, collate
from .lora import add_lora
from .objective import diffusion_loss

logger = logging.getLogger(__name__)


@dataclass
class TrainingRun:
    """What `train` produced: the run folder, the final weights, the loss of every optimiser step."""

    folder: Path
    weights: Path
    losses: list[float] = field(default_factory=list)
    start_step: int = 0
    step: int = 0


def prepare_transformer(transformer: torch.nn.Module, config) -> dict | None:
    """Make `transformer` trainable as `config` (a `TrainConfig`) says; returns the LoRA config or None."""
    transformer.train()
    lora = None
    if config.mode == "lora":
        lora = add_lora(transformer, config.lora_rank, config.lora_alpha, config.lora_targets)
    else:
        transformer.requires_grad_(True)
    if config.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return lora


def make_optimizer(params, config, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA when asked) or bitsandbytes' 8-bit AdamW."""
    kwargs = dict(lr=config.learning_rate, betas=config.adam_betas, weight_decay=config.weight_decay)
    if config.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as error:
            raise ImportError("train.optimizer 'adamw8bit' needs bitsandbytes: pip install bitsandbytes") from error
        return bnb.optim.AdamW8bit(params, **kwargs)
    fused = config.optimizer == "adamw_fused" and device.type == "cuda"
    return torch.optim.AdamW(params, fused=fused or None, **kwargs)


def warmup_schedule(optimizer, warmup_steps: int):
    """Linear warm-up over `warmup_steps`, then constant."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0)


def make_accelerator(config: TrainingConfig):
    """An `accelerate.Accelerator` for this config (DDP, or FSDP sharded per transformer block)."""
    from accelerate import Accelerator
    from accelerate.utils import FullyShardedDataParallelPlugin

    train = config.train
    plugin = None
    if train.distributed == "fsdp":
        if train.mode == "lora":
            raise ValueError("train.distributed 'fsdp' is for full fine-tuning; LoRA trains a few million "
                             "parameters over a frozen bf16 base, use 'ddp'")
        plugin = FullyShardedDataParallelPlugin(
            auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=["CogVideoXBlock"],
            state_dict_type="FULL_STATE_DICT", use_orig_params=True,
        )
    return Accelerator(mixed_precision=train.mixed_precision, fsdp_plugin=plugin)


def train(config: TrainingConfig, data_root, output_dir, *, base_dir=None, casper_weights=None,
          components: TrainingComponents | None = None, resume=None, progress: bool = True) -> TrainingRun:
    """Fine-tune the transformer on the tuples in `data_root`, writing into the new folder `output_dir`.

    Args:
        config: data and training settings.
        data_root: a training set written by ``python -m casper_core.training.synthesize``.
        output_dir: the run folder; must not exist (runs never overwrite).
        base_dir, casper_weights: the release files to load (see `load_training_components`), unless
            `components` are given (tests and benchmarks build them in memory).
        resume: a checkpoint folder of an earlier run (``<run>/checkpoints/step_NNNNNN``) to continue from.
        progress: show a progress bar (main process only).
    """
    from accelerate.utils import set_seed

    train_config = config.train
    # 1. Check inputs before any heavy work
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"output folder {output_dir} already exists; every run writes into a new folder")
    if components is None and base_dir is None:
        raise ValueError("base_dir: expected the CogVideoX-Fun-V1.5-5b-InP folder (or pass components)")
    start_step = read_step(resume) if resume is not None else 0
    if start_step >= train_config.steps:
        raise ValueError(f"resume: the checkpoint is at step {start_step}, train.steps is {train_config.steps}")
    if train_config.mode == "lora" and train_config.lora_base_dtype == "bf16" and train_config.mixed_precision == "no":
        raise ValueError("train.lora_base_dtype 'bf16' needs train.mixed_precision 'bf16' (or use 'fp32')")
    dataset = TupleDataset(data_root, config.data)

    accelerator = make_accelerator(config)
    accumulation = train_config.accumulation_steps(accelerator.num_processes)
    set_seed(train_config.seed)
    device = accelerator.device
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True)
        (output_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    accelerator.wait_for_everyone()

    # 2. Model parts; the transformer made trainable
    if components is None:
        full = train_config.mode == "full" or train_config.lora_base_dtype == "fp32"
        components = load_training_components(
            base_dir, casper_weights, prompt=train_config.prompt,
            transformer_dtype=torch.float32 if full else torch.bfloat16, device=device)
    transformer = components.transformer
    lora = prepare_transformer(transformer, train_config)
    conditioning = TrimaskConditioning(transformer, components.vae.to(device).requires_grad_(False), device)
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, train_config, device)
    schedule = warmup_schedule(optimizer, train_config.warmup_steps)
    model, optimizer = accelerator.prepare(transformer, optimizer)
    accelerator.register_for_checkpointing(schedule)
    if accelerator.distributed_type.value != "FSDP":
        _register_trainable_state_hooks(accelerator)
    trained = accelerator.unwrap_model(model)
    prompt_embeds = components.prompt_embeds.to(device)

    # 3. Resume
    if resume is not None:
        accelerator.load_state(str(Path(resume) / "state"))
        logger.info("resumed from %s at step %d", resume, start_step)

    # 4. Data: this process's share of the example stream, from the step reached
    sampler = MixtureSampler(dataset.categories, config.data.mix, seed=train_config.seed,
                             rank=accelerator.process_index, world_size=accelerator.num_processes,
                             start=start_step * train_config.batch_size)
    loader = DataLoader(dataset, batch_size=train_config.micro_batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=train_config.num_workers, persistent_workers=train_config.num_workers > 0)
    batches = iter(loader)

    # 5. The loop
    run = TrainingRun(folder=output_dir, weights=output_dir / CASPER_FILE, start_step=start_step, step=start_step)
    bar = _progress_bar(train_config.steps, start_step, progress and accelerator.is_main_process)
    log = open(output_dir / "losses.jsonl", "a") if accelerator.is_main_process else None
    try:
        for step in range(start_step, train_config.steps):
            model.train()
            step_loss = torch.zeros((), device=device)
            for micro in range(accumulation):
                batch = next(batches)
                generator = torch.Generator(device).manual_seed(
                    _example_seed(train_config.seed, step, micro, accelerator.process_index))
                latents, condition, rotary = conditioning(batch, generator, train_config.input_noise)
                sync = micro == accumulation - 1
                with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                    with accelerator.autocast():
                        loss = diffusion_loss(model, components.scheduler, latents, condition, prompt_embeds,
                                              rotary, generator)
                    accelerator.backward(loss / accumulation)
                step_loss += loss.detach() / accumulation
            accelerator.clip_grad_norm_(params, train_config.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            mean_loss = float(accelerator.reduce(step_loss, "mean"))
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"loss became {mean_loss} at step {step + 1}; lower train.learning_rate")
            run.losses.append(mean_loss)
            run.step = step + 1
            if log is not None:
                log.write(json.dumps({"step": step + 1, "loss": mean_loss, "lr": schedule.get_last_lr()[0]}) + "\n")
                log.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss:.4f}")
            every = train_config.checkpoint_every
            if (every and run.step % every == 0) or run.step == train_config.steps:
                _checkpoint(accelerator, model, output_dir / "checkpoints" / f"step_{run.step:06d}", run.step,
                            config, lora)
    finally:
        bar.close()
        if log is not None:
            log.close()

    # 6. The final weights beside the checkpoints
    final = output_dir / "checkpoints" / f"step_{run.step:06d}"
    if accelerator.is_main_process:
        shutil.copyfile(final / CASPER_FILE, run.weights)
        if lora is not None:
            shutil.copytree(final / "lora", output_dir / "lora")
    accelerator.wait_for_everyone()
    del trained
    return run


def _checkpoint(accelerator, model, folder: Path, step: int, config: TrainingConfig, lora: dict | None) -> None:
    accelerator.wait_for_everyone()
    accelerator.save_state(str(folder / "state"))
    state = accelerator.get_state_dict(model)  # gathers a sharded model on the main process
    if accelerator.is_main_process:
        write_checkpoint(folder, state, step, config.to_dict(), lora)
    accelerator.wait_for_everyone()


def _register_trainable_state_hooks(accelerator) -> None:
    # accelerate would store the whole model in every checkpoint; store the trained parameters only.
    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            save_trainable(accelerator.unwrap_model(models[0]), output_dir)
        weights.clear()

    def load_hook(models, input_dir):
        load_trainable(accelerator.unwrap_model(models[0]), input_dir)
        models.clear()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def _example_seed(seed: int, step: int, micro: int, rank: int) -> int:
    return (seed * 1_000_003 + step) * 10_007 * 4_099 + micro * 4_099 + rank


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="training", unit="step", disable=not enabled)
