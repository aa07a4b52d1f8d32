"""The Casper pipeline on Wan2.1-Fun-InP (1.3B fine-tuned in full, 14B with a LoRA), on diffusers building blocks.

Per trimask job the transformer (`diffusers.WanTransformer3DModel`, 36 input channels) denoises
``[noisy latents 16 | mask 4 | video latents 16]`` in (b, c, f, h, w) order with flow-matching Euler steps:

- **mask** (4 channels): ``1 − trimask`` (keep 1, neutral 128/255, remove 0), frame 0 repeated 4 times ahead of the
  others, so that latent frame k carries its 4 source frames as 4 channels; resized to the latent grid (trilinear,
  align_corners False: latent cell (i, j) samples pixels 8i+3..8i+4). No VAE scaling, unlike CogVideoX.
- **video latents**: the whole (unmasked) video, VAE encoder mean normalised by the release's per-channel latent
  mean and std. No input-noise augmentation (the reference's Wan path passes none).
- **image tokens**: the Fun-InP model is Wan's image-to-video model; the reference feeds it the CLIP features of a
  black picture *set to zero*, so the CLIP encoder is never needed: we pass zeros of the same shape (257 × 1280).
- **text**: UMT5 embeddings of the prompt (512 tokens, attention mask), zero past the prompt's length.

Clips are padded like the reference's Wan inference (4k+1 frames with k odd, then at least one window: 81 frames),
and longer clips run as overlapping windows of exactly the window length (the last one shifted back to end at the
clip's end), blended every step with linear ramps (`casper_core.temporal`). What matches the public reference and
what deliberately differs is in PARITY.md.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F

from .pipeline import CasperResult
from . import pipeline_common as common
from .pipeline_common import NEUTRAL_VALUE, SIZE_MULTIPLE  # noqa: F401  (imported from this module too)
from .preview import fit_latent_to_rgb, latents_to_image
from .temporal import TEMPORAL_COMPRESSION, latent_frames, padded_length, plan_full_windows, window_weights

# The reference's prompt length for UMT5 (padded, with an attention mask; embeddings past the prompt are zero).
MAX_SEQUENCE_LENGTH = 512
# CLIP ViT-H/14 tokens (16 × 16 patches + class token) of the image branch; their values are zeros.
IMAGE_TOKENS = 257
# The release's inference settings (the reference's Wan config): 81-frame windows, 480 × 832.
DEFAULT_WINDOW_FRAMES = 81
DEFAULT_SIZE = (480, 832)


class WanCasperPipeline(common.PipelineComponents):
    """Object-and-effect removal with Casper on Wan2.1-Fun-InP.

    Components (attributes of the same names): ``transformer`` (`diffusers.WanTransformer3DModel`, image branch,
    in_channels = 2 × out_channels + 4), ``vae`` (`diffusers.AutoencoderKLWan`), ``text_encoder``
    (`transformers.UMT5EncoderModel`), ``tokenizer``, ``scheduler`` (`diffusers.FlowMatchEulerDiscreteScheduler`
    with the release's shift 5). Called like `casper_core.CasperPipeline`, and returns the same `CasperResult`.
    """

    family = "wan2.1-fun"
    default_window_frames = DEFAULT_WINDOW_FRAMES
    default_size = DEFAULT_SIZE

    def __init__(self, transformer, vae, text_encoder, tokenizer, scheduler):
        super().__init__(transformer, vae, text_encoder, tokenizer, scheduler)
        self.attention_kernels = None  # (kernels, set_priority) for torch's sdpa_kernel, or None: torch's choice
        config = transformer.config
        if config.in_channels != 2 * config.out_channels + 4:
            raise ValueError(
                f"transformer: expected the Wan2.1-Fun inpaint transformer with in_channels = 2 × out_channels + 4 "
                f"(36), got in_channels {config.in_channels}, out_channels {config.out_channels}"
            )
        self.vae_scale_factor_spatial = 2 ** len(vae.config.temperal_downsample)

    @classmethod
    def from_pretrained(cls, base_dir, casper_weights=None, **kwargs) -> "WanCasperPipeline":
        """Load from the release files; see `casper_core.wan_loading.load_wan_casper_pipeline`."""
        from .wan_loading import load_wan_casper_pipeline

        return load_wan_casper_pipeline(base_dir, casper_weights, **kwargs)

    # --- attention kernels ----------------------------------------------------------------------------------
    def _attention(self):
        if self.attention_kernels is None:
            return contextlib.nullcontext()
        from torch.nn.attention import sdpa_kernel

        kernels, set_priority = self.attention_kernels
        return sdpa_kernel(kernels, set_priority=set_priority)

    # --- the call ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        video: torch.Tensor,
        jobs,
        *,
        prompt: str = "empty scene",
        negative_prompt: str = "",
        guidance_scale: float = 1.0,
        steps: int = 50,
        seed: int = 0,
        window_frames: int = DEFAULT_WINDOW_FRAMES,
        overlap_frames: int = 16,
        batch_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        live_progress: Callable[[int, int, torch.Tensor | None], None] | None = None,
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CasperResult:
        """Remove what each trimask job marks for removal.

        Args:
            video: ``[T,H,W,3]`` float in 0..1, any T ≥ 1 (H, W multiples of 16 unless `height`/`width` given).
            jobs: `TrimaskJobs`, or a trimask tensor ``[J,T,H,W]`` / ``[T,H,W]`` (1 remove, 0.5 neutral, 0 keep).
            prompt, negative_prompt: text; the negative prompt is used only with `guidance_scale` > 1.
            guidance_scale: 1 = no guidance (as released); > 1 is classifier-free guidance.
            steps: flow-matching Euler steps (50 as released).
            seed: seed of the initial noise; every job gets a fresh CPU generator with it, so a job's output does
                not depend on the other jobs or the batch size.
            window_frames: temporal window, 4k+1 frames (81 as released); shorter clips are padded to it.
            overlap_frames: frames shared by neighbouring windows (16 as released: 4 latent frames); must be
                shorter than the window only when the clip needs more than one window.
            batch_size: jobs per transformer batch; None runs all jobs in one batch.
            progress: ``progress(step, total)`` after every denoising step; may raise to interrupt.
            live_progress: ``live_progress(done, total, preview)``: after every step with an ``[h,w,3]`` preview of
                the first job's predicted clean middle frame, after every job's decode with None.
            height, width: working resolution (multiples of 16); inputs are area-resized to it and the outputs
                resized back. None = the input size. The release was trained at 480 × 832.
            generator: one generator shared by all jobs (the reference's behaviour) instead of a fresh one per job.

        Returns:
            `CasperResult`: ``names`` and ``videos [J,T,H,W,3]`` float32 0..1 on the CPU.
        """
        # 1. Check inputs
        names, trimasks = self.check_inputs(
            video, jobs, guidance_scale, steps, window_frames, overlap_frames, batch_size, height, width
        )
        frames, in_height, in_width = video.shape[:3]
        work_height, work_width = height or in_height, width or in_width
        device, dtype = self.execution_device, self.dtype
        do_cfg = guidance_scale > 1.0
        num_jobs = len(names)

        try:
            # 2. Pixels in −1..1 [1,3,Tp,H,W] and trimasks [J,1,Tp,H,W] at the working size, padded as the
            #    reference pads for Wan: 4k+1 frames with k odd first, then at least one window
            total_frames = max(padded_length(frames), window_frames)
            pixels, masks = common.prepare_pixels_and_masks(video, trimasks, (work_height, work_width), total_frames)

            # 3. Encode input prompt (negative first under guidance, as the reference concatenates them)
            prompt_embeds = self.encode_prompt(prompt)
            if do_cfg:
                prompt_embeds = torch.cat([self.encode_prompt(negative_prompt), prompt_embeds])

            # 4. Prepare timesteps
            shift_kwargs = {"mu": 1.0} if getattr(self.scheduler.config, "use_dynamic_shifting", False) else {}
            self.scheduler.set_timesteps(steps, device=device, **shift_kwargs)
            timesteps = self.scheduler.timesteps

            # 5. Noise, drawn on the CPU in (b, c, f, h, w) order (the reference's randn_tensor order)
            num_latents = latent_frames(total_frames)
            latent_shape = (
                1, self.transformer.config.out_channels, num_latents,
                work_height // self.vae_scale_factor_spatial, work_width // self.vae_scale_factor_spatial,
            )
            noise = [torch.randn(latent_shape, generator=common.job_generator(seed, generator), dtype=dtype)]
            noise += common.further_jobs_noise(latent_shape, dtype, generator, num_jobs)

            # 6. Encode the (unmasked) video; 7. mask channels; zero image tokens
            video_latents = self.encode_video(pixels)  # [1,16,F,h,w]
            preview_map = (fit_latent_to_rgb(video_latents[0].transpose(0, 1), pixels[0])
                           if live_progress is not None else None)
            mask_latents = self.mask_latents(masks, num_latents, latent_shape[-2:])  # [J,4,F,h,w]
            image_embeds = self.image_embeddings(2 if do_cfg else 1)

            window = latent_frames(window_frames)
            overlap = overlap_frames // TEMPORAL_COMPRESSION
            windows = plan_full_windows(num_latents, window, overlap)
            batches = common.job_batches(num_jobs, batch_size)
            total_steps = steps * len(batches)
            live_total, live_done = total_steps + num_jobs, 0
            preview_latent = common.middle_latent(frames, num_latents)

            outputs = []
            for batch_index, job_slice in enumerate(batches):
                count = job_slice.stop - job_slice.start
                latents = common.batch_start_noise(noise, generator is not None, job_slice)
                # (schedulers with an initial noise scale apply it, as the reference does; flow matching has none)
                latents = latents.to(device) * getattr(self.scheduler, "init_noise_sigma", 1.0)
                condition = torch.cat(
                    [mask_latents[job_slice], video_latents.expand(count, -1, -1, -1, -1)], dim=1
                ).to(device, dtype)
                # 8. Denoising loop with temporal multidiffusion
                for i, t in enumerate(timesteps):
                    latents, predicted = self._denoise_step(
                        latents, condition, t, i, prompt_embeds, image_embeds, guidance_scale, windows, overlap
                    )
                    if progress is not None:
                        progress(batch_index * steps + i + 1, total_steps)
                    if live_progress is not None:
                        live_done += 1
                        preview = latents_to_image(predicted[0, :, preview_latent], preview_map,
                                                   scale=self.vae_scale_factor_spatial)
                        live_progress(live_done, live_total, preview)
                # 9. Decode, crop to the input length, resize to the input size
                for j in range(count):
                    decoded = self.decode(latents[j : j + 1])[0]  # [3,T',h,w] in 0..1
                    outputs.append(
                        common.to_output_video(decoded, frames, (work_height, work_width), (in_height, in_width))
                    )
                    if live_progress is not None:
                        live_done += 1
                        live_progress(live_done, live_total, None)
        finally:
            self._release()
        return CasperResult(names=names, videos=torch.stack(outputs))

    # --- steps ---------------------------------------------------------------------------------------------------
    def check_inputs(
        self, video, jobs, guidance_scale, steps, window_frames, overlap_frames, batch_size, height, width
    ) -> tuple[list[str], torch.Tensor]:
        """Validate every argument before any heavy work; returns the job names and trimasks ``[J,T,H,W]``."""
        names, trimasks = common.check_video_and_jobs(video, jobs)
        frames, in_height, in_width = video.shape[:3]
        if tuple(trimasks.shape[1:]) != (frames, in_height, in_width):
            raise ValueError(f"jobs: trimasks are {tuple(trimasks.shape[1:])} (T,H,W), but the video is "
                             f"{(frames, in_height, in_width)}")
        common.check_size_steps_guidance((in_height, in_width), height, width, steps, guidance_scale)
        if not isinstance(window_frames, int) or window_frames < 5 or (window_frames - 1) % TEMPORAL_COMPRESSION:
            raise ValueError(f"window_frames: expected 4k+1 frames ≥ 5 (81 as released), got {window_frames!r}")
        window = latent_frames(window_frames)
        clip_latents = latent_frames(max(padded_length(frames), window_frames))
        common.check_overlap_frames(overlap_frames, frames, window_frames, window, clip_latents)
        common.check_batch_size(batch_size)
        return names, trimasks

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """UMT5 embeddings ``[1,512,D]`` of `prompt`: with the attention mask, zero past the prompt's tokens."""
        tokens = common.tokenize_prompt(self.tokenizer, prompt, MAX_SEQUENCE_LENGTH)
        mask = tokens.attention_mask.to(self.execution_device)
        embeds = self.text_encoder(tokens.input_ids.to(self.execution_device), attention_mask=mask)[0]
        embeds = embeds * mask[..., None].to(embeds.dtype)
        return embeds.to(device=self.execution_device, dtype=self.dtype)

    def image_embeddings(self, batch: int) -> torch.Tensor | None:
        """The image branch's input: zeros ``[batch,257,image_dim]`` (None for a model without the branch)."""
        image_dim = getattr(self.transformer.config, "image_dim", None)
        if not image_dim:
            return None
        return torch.zeros(batch, IMAGE_TOKENS, image_dim, device=self.execution_device, dtype=self.dtype)

    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised VAE latents ``[1,C,F,h,w]`` (encoder mean) of pixels ``[1,3,T,H,W]`` in −1..1."""
        latents = self.vae.encode(pixels.to(self.execution_device, self.vae.dtype))[0].mode()
        mean, inverse_std = self._latent_stats(latents)
        return ((latents - mean) * inverse_std).to(self.dtype)

    def _latent_stats(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1, 1)
        config = self.vae.config
        mean = torch.tensor(config.latents_mean, dtype=torch.float32).view(shape)
        # 1/std rounded to float32 first, as the reference stores it
        inverse_std = 1.0 / torch.tensor(config.latents_std, dtype=torch.float32).view(shape)
        return mean.to(latents.device, latents.dtype), inverse_std.to(latents.device, latents.dtype)

    def mask_latents(self, masks: torch.Tensor, num_latents: int, latent_size) -> torch.Tensor:
        """Mask channels ``[J,4,F,h,w]`` from trimasks ``[J,1,Tp,H,W]`` (internal values): ``1 − trimask``, frame 0
        taken 4 times ahead of the others, each latent frame's 4 source frames as 4 channels, resized trilinearly
        to the latent grid."""
        inverted = self._to_device(1.0 - masks, torch.float32)
        stacked = torch.cat([inverted[:, :, :1].repeat_interleave(TEMPORAL_COMPRESSION, dim=2), inverted[:, :, 1:]],
                            dim=2)  # [J,1,4F,H,W]
        jobs, _, length, height, width = stacked.shape
        if length != TEMPORAL_COMPRESSION * num_latents:
            raise ValueError(f"masks: {masks.shape[2]} frames do not give {num_latents} latent frames")
        grouped = stacked.view(jobs, num_latents, TEMPORAL_COMPRESSION, height, width).transpose(1, 2)
        resized = F.interpolate(grouped, size=(num_latents, *latent_size), mode="trilinear", align_corners=False)
        return resized.to(self.dtype)

    def _denoise_step(
        self, latents, condition, t, index, prompt_embeds, image_embeds, guidance_scale, windows, overlap
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One Euler step over all windows; overlapping windows' stepped latents are blended with linear ramps.

        Returns the stepped latents and the prediction of the clean latents (blended alike; for previews).
        """
        if len(windows) == 1:
            begin, end = windows[0]
            return self._step_window(latents[:, :, begin:end], condition[:, :, begin:end], t, index, prompt_embeds,
                                     image_embeds, guidance_scale)
        num_latents = latents.shape[2]
        canvas = torch.zeros_like(latents, dtype=torch.float32)
        predicted_canvas = torch.zeros_like(latents, dtype=torch.float32)
        weight_sum = torch.zeros(1, 1, num_latents, 1, 1, device=latents.device, dtype=torch.float32)
        for begin, end in windows:
            stepped, predicted = self._step_window(latents[:, :, begin:end], condition[:, :, begin:end], t, index,
                                                   prompt_embeds, image_embeds, guidance_scale)
            weights = window_weights(begin, end, num_latents, overlap).to(latents.device).view(1, 1, -1, 1, 1)
            canvas[:, :, begin:end] += stepped.float() * weights
            predicted_canvas[:, :, begin:end] += predicted * weights
            weight_sum[:, :, begin:end] += weights
        return (canvas / weight_sum).to(latents.dtype), predicted_canvas / weight_sum

    def _step_window(self, latents, condition, t, index, prompt_embeds, image_embeds, guidance_scale):
        batch = latents.shape[0]
        model_input = torch.cat([latents, condition], dim=1)
        embeds = prompt_embeds.repeat_interleave(batch, dim=0)
        images = None if image_embeds is None else image_embeds.repeat_interleave(batch, dim=0)
        do_cfg = prompt_embeds.shape[0] == 2
        if do_cfg:
            model_input = torch.cat([model_input, model_input])
        with self._attention():
            noise_pred = self.transformer(
                hidden_states=model_input,
                timestep=t.expand(model_input.shape[0]),
                encoder_hidden_states=embeds,
                encoder_hidden_states_image=images,
                return_dict=False,
            )[0]
        if do_cfg:
            uncond, cond = noise_pred.chunk(2)
            noise_pred = uncond + guidance_scale * (cond - uncond)
        # Every window steps from the same point of the schedule: the scheduler counts its own steps, so its index
        # is set before each window (the reference steps it back after each window for the same reason).
        self.scheduler._step_index = index
        stepped = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        # flow matching: x_t = (1 − σ) x_0 + σ ε, the model predicts ε − x_0, so x_0 = x_t − σ · prediction
        sigma = float(self.scheduler.sigmas[index])
        return stepped, latents.float() - sigma * noise_pred.float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Video ``[B,3,4(F−1)+1,H,W]`` in 0..1 (float32) from normalised latents ``[B,C,F,h,w]``."""
        z = latents.to(self.vae.dtype)
        mean, inverse_std = self._latent_stats(z)
        frames = self.vae.decode(z / inverse_std + mean, return_dict=False)[0]
        return (frames.float() / 2 + 0.5).clamp(0, 1)
