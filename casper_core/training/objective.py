"""The diffusion loss CogVideoX-Fun is trained with, on Casper's 33-channel input.

For clean latents x0, noise ε and a timestep t drawn uniformly from the schedule's 1000 training steps:
``x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε`` and the transformer predicts the velocity ``v = √ᾱ_t ε − √(1−ᾱ_t) x0``
(``prediction_type: v_prediction`` in the release's scheduler config); the loss is the plain mean squared error,
in float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def diffusion_loss(transformer, scheduler, latents: torch.Tensor, condition: torch.Tensor,
                   prompt_embeds: torch.Tensor, rotary, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean squared error of the predicted target (velocity or noise, as the scheduler says).

    Args:
        transformer: the model (possibly wrapped by accelerate / DDP).
        scheduler: `diffusers.DDPMScheduler` of the release's schedule.
        latents: ``[B,f,16,h,w]`` clean target latents.
        condition: ``[B,f,17,h,w]`` mask and video latents (`casper_core.training.conditioning`).
        prompt_embeds: ``[1,226,D]`` or ``[B,226,D]``.
        rotary: rotary position embeddings for this latent grid (or None).
        generator: source of the noise and timesteps (on the latents' device), for repeatable losses.
    """
    batch = latents.shape[0]
    device = latents.device
    noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator, device=device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    elif prediction_type == "epsilon":
        target = noise
    else:
        raise ValueError(f"scheduler prediction_type {prediction_type!r}: expected 'v_prediction' or 'epsilon'")
    model_input = torch.cat([noisy, condition.to(noisy.dtype)], dim=2)
    embeds = prompt_embeds.to(device).expand(batch, -1, -1)
    prediction = transformer(hidden_states=model_input, encoder_hidden_states=embeds, timestep=timesteps,
                             image_rotary_emb=rotary, return_dict=False)[0]
    return F.mse_loss(prediction.float(), target.float())
