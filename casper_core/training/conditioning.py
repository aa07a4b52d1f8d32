"""The model input of a training example, made exactly as the Casper pipeline makes it at inference.

`CasperPipeline` holds the one implementation of the 33-channel input: ``[noisy latents 16 | 1 − trimask on the
latent grid × scaling factor 1 | VAE latents of the (unmasked) input video 16]``, the clip padded by reflection to
4k+1 frames with k odd, neutral fed as 127/255, rotary position embeddings on the latent grid. Training calls the
same methods (`encode_video`, `mask_latents`, `_rotary_embeddings`), so what the model learns from is what it
sees when removing. Two things differ, as CogVideoX-Fun trains: the target latents are a *sample* of the VAE
posterior (inference encodes the mean), and the input-noise augmentation draws a strength per example,
exp(N(−3, 0.5²)), instead of the fixed 0.0563.
"""
from __future__ import annotations

import torch

from ..pipeline import NEUTRAL_VALUE, CasperPipeline
from ..temporal import latent_frames, pad_frames, padded_length
from ..trimask import quantize_trimask

# CogVideoX-Fun's training draw of the input-noise strength: log σ ~ N(−3, 0.5²).
INPUT_NOISE_LOG_MEAN, INPUT_NOISE_LOG_STD = -3.0, 0.5


class TrimaskConditioning:
    """Encodes batches for the transformer with the pipeline's own methods.

    Args:
        transformer: the (unwrapped) transformer; only its config is read here.
        vae: the frozen VAE.
        device: where the VAE runs and the latents go.
        dtype: dtype of the latents handed to the transformer (float32; autocast lowers it in bf16 runs).
    """

    def __init__(self, transformer, vae, device, dtype: torch.dtype = torch.float32):
        self.pipeline = CasperPipeline(transformer, vae, text_encoder=None, tokenizer=None, scheduler=None)
        self.pipeline.set_execution_device(device)
        self.pipeline.compute_dtype = dtype
        self.vae = vae
        self.device = torch.device(device)
        self.rotary_cache: dict = {}

    @torch.no_grad()
    def __call__(self, batch: dict, generator: torch.Generator | None = None, input_noise: bool = True):
        """Latents of a batch from `casper_core.training.dataset.TupleDataset`.

        Args:
            batch: ``input``, ``target`` ``[B,F,3,H,W]`` 0..1 and ``trimask`` ``[B,F,1,H,W]`` in {0, 0.5, 1}.
            generator: source of the VAE sample and the input noise (on `device`).
            input_noise: add the input-noise augmentation (only if the transformer config asks for it).

        Returns:
            ``(target latents [B,f,16,h,w], condition latents [B,f,17,h,w], rotary embeddings or None)``.
        """
        frames, height, width = batch["input"].shape[1], batch["input"].shape[-2], batch["input"].shape[-1]
        total = padded_length(frames)
        target = self._pixels(batch["target"], total)
        pixels = self._pixels(batch["input"], total)
        masks = quantize_trimask(batch["trimask"].to(self.device, torch.float32))
        masks = torch.where(masks == 0.5, NEUTRAL_VALUE, masks)
        masks = pad_frames(masks, total, dim=1).permute(0, 2, 1, 3, 4)  # [B,1,Tp,H,W]

        vae_dtype = self.vae.dtype
        posterior = self.vae.encode(target.to(vae_dtype))[0]
        target_latents = posterior.sample(generator) * self.vae.config.scaling_factor
        target_latents = target_latents.permute(0, 2, 1, 3, 4).float()

        augmentation = None
        if input_noise and getattr(self.pipeline.transformer.config, "add_noise_in_inpaint_model", False):
            log_sigma = torch.randn(pixels.shape[0], generator=generator, device=self.device)
            sigma = torch.exp(INPUT_NOISE_LOG_MEAN + INPUT_NOISE_LOG_STD * log_sigma).view(-1, 1, 1, 1, 1)
            augmentation = torch.randn(pixels.shape, generator=generator, device=self.device) * sigma
        video_latents = self.pipeline.encode_video(pixels, augmentation).float()
        mask_latents = self.pipeline.mask_latents(masks, video_latents.shape[1], video_latents.shape[-2:]).float()
        condition = torch.cat([mask_latents, video_latents], dim=2)
        rotary = self.pipeline._rotary_embeddings(latent_frames(total), (height, width), self.rotary_cache)
        return target_latents, condition, rotary

    def _pixels(self, video: torch.Tensor, total: int) -> torch.Tensor:
        """``[B,F,3,H,W]`` 0..1 → ``[B,3,Tp,H,W]`` in −1..1, padded by reflection to `total` frames."""
        video = pad_frames(video.to(self.device, torch.float32), total, dim=1)
        return (video * 2.0 - 1.0).permute(0, 2, 1, 3, 4).contiguous()
