"""The model parts a fine-tuning run needs, loaded from the release files (or handed in, for tests and benchmarks).

The transformer is read exactly as inference reads it (`casper_core.loading.load_diffusers_model`: the base folder,
with a Casper ``.safetensors`` over it when continuing from Casper weights) and then made trainable. The VAE stays
frozen. The T5 encoder runs once, for the training prompt, and is dropped. The noise schedule for training is
diffusers' `DDPMScheduler` built from the release's ``scheduler_config.json`` (the same betas, zero-terminal-SNR
rescaling and v-prediction as the DDIM sampler of `casper_core.loading.load_scheduler`), which is what CogVideoX-Fun
trains with.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import loading
from ..pipeline import CasperPipeline

# The DDIM-only key of the release's scheduler file (CogVideoXDDIMScheduler); DDPMScheduler does not take it.
_SCHEDULER_SKIP = ("snr_shift_scale",)


@dataclass
class TrainingComponents:
    """What the training loop uses.

    Attributes:
        transformer: `diffusers.CogVideoXTransformer3DModel` with 33 input channels (made trainable by the trainer).
        vae: `diffusers.AutoencoderKLCogVideoX`, frozen.
        scheduler: `diffusers.DDPMScheduler` of the release's schedule (v-prediction).
        prompt_embeds: ``[1,226,D]`` T5 embeddings of the training prompt.
        scheduler_config: the release's scheduler config (as read), kept for the run's records.
    """

    transformer: torch.nn.Module
    vae: torch.nn.Module
    scheduler: object
    prompt_embeds: torch.Tensor
    scheduler_config: dict


def training_scheduler(config: dict):
    """`DDPMScheduler` from a release ``scheduler_config.json`` dict (DDIM-only keys dropped)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config({k: v for k, v in config.items() if k not in _SCHEDULER_SKIP})


def load_training_components(base_dir, casper_weights=None, *, prompt: str = "empty scene",
                             transformer_dtype: torch.dtype = torch.float32,
                             vae_dtype: torch.dtype = torch.bfloat16, device="cpu") -> TrainingComponents:
    """Load the transformer (base, or Casper weights over it), VAE, scheduler and the prompt's embeddings.

    Args:
        base_dir: CogVideoX-Fun-V1.5-5b-InP diffusers folder (see `casper_core.loading`).
        casper_weights: a Casper ``.safetensors`` to start from (e.g. to continue a run), or None for the base.
        prompt: the training prompt (encoded once).
        transformer_dtype: float32 for full fine-tuning (master weights), bf16 for LoRA's frozen base.
        vae_dtype, device: where and how the frozen parts run.
    """
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    # 1. Check every file before reading weights (the loader's checks)
    folders = loading.check_base_dir(base_dir)
    casper_path, casper_format = loading.check_casper_weights(casper_weights)
    if casper_format == "diffusers_folder":
        raise ValueError(f"casper_weights {casper_path}: training continues from a .safetensors state dict; "
                         "pass the diffusers folder as base_dir instead")
    loading.check_inpaint_transformer_config(folders["transformer"] / "config.json")
    transformer_files = loading.find_safetensors(folders["transformer"], "diffusion_pytorch_model")
    vae_files = loading.find_safetensors(folders["vae"], "diffusion_pytorch_model")

    # 2. Weights
    overrides = None
    if casper_path is not None:
        overrides, _ = loading.strip_wrapper_prefix(loading.read_safetensors([casper_path]))
    transformer, _ = loading.load_diffusers_model(
        CogVideoXTransformer3DModel, folders["transformer"], transformer_files, transformer_dtype,
        overrides=overrides, min_override_share=loading.MIN_CASPER_SHARE if overrides else 0.0,
        override_source=f"casper_weights {casper_path}",
    )
    vae, _ = loading.load_diffusers_model(AutoencoderKLCogVideoX, folders["vae"], vae_files, vae_dtype)
    scheduler_config = json.loads((Path(folders["scheduler"]) / "scheduler_config.json").read_text())

    # 3. The prompt, encoded as inference encodes it, then the text encoder is released
    text_encoder = loading.load_text_encoder(folders["text_encoder"], torch.float32)
    tokenizer = loading.load_tokenizer(folders["tokenizer"])
    helper = CasperPipeline(transformer, vae, text_encoder, tokenizer, None)
    helper.compute_dtype = torch.float32
    with torch.no_grad():
        prompt_embeds = helper.encode_prompt(prompt).cpu()
    del helper, text_encoder
    return TrainingComponents(
        transformer=transformer,
        vae=vae.to(device),
        scheduler=training_scheduler(scheduler_config),
        prompt_embeds=prompt_embeds,
        scheduler_config=scheduler_config,
    )
