"""The Casper pipeline: CogVideoX-Fun-V1.5 inpainting with trimask conditioning, on diffusers building blocks.

For each trimask job the transformer denoises ``[noisy latents 16 | mask latent 1 | video latents 16]`` (33
channels, (b, f, c, h, w) order) with DDIM; clips longer than one temporal window are denoised as overlapping
windows blended per step (temporal multidiffusion). What the public reference computes, and where we deliberately
differ, is written down in PARITY.md; the behaviour switches that reproduce the reference exactly are the
`noise_augmentation` argument and a shared `generator`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .defaults import OVERLAP_FRAMES, PROMPT, SEED, STEPS, WINDOW_FRAMES
from . import pipeline_common as common
from .pipeline_common import NEUTRAL_VALUE, SIZE_MULTIPLE  # noqa: F401  (imported from this module too)
from .preview import fit_latent_to_rgb, latents_to_image
from .temporal import latent_frames, padded_length, plan_windows, window_latent_frames, window_weights
from .vae_decode import decode_latents, decode_units

# The reference encodes the prompt to 226 tokens (T5, eos appended, zero padding, no attention mask).
MAX_SEQUENCE_LENGTH = 226
# Input-noise augmentation of the unmasked video (the reference's `noise_aug_strength` default, applied when the
# transformer config has `add_noise_in_inpaint_model`).
NOISE_AUG_STRENGTH = 0.0563


def reference_input_noise(shape, strength: float = NOISE_AUG_STRENGTH) -> torch.Tensor:
    """The public reference's input-noise augmentation for pixels of `shape` ``(b, c, f, h, w)``, on the CPU.

    It draws ``randn_like`` of a (b, c, f, h, w) *view* of a (b·f, c, h, w) tensor from the global torch RNG; for
    such non-contiguous strides torch's CPU sampler fills values in a different order than for a contiguous tensor,
    so the values equal neither ``randn(b, c, f, h, w)`` nor a permuted ``randn(b, f, c, h, w)``.
    """
    b, c, f, h, w = shape
    like = torch.empty(b * f, c, h, w).view(b, f, c, h, w).permute(0, 2, 1, 3, 4)
    return torch.randn_like(like).contiguous() * strength


@dataclass
class CasperResult:
    """Output of `CasperPipeline.__call__`.

    Attributes:
        names: one name per job (from the trimask jobs).
        videos: ``[J,T,H,W,3]`` float32 in 0..1 on the CPU, at the input length and resolution.
    """

    names: list[str]
    videos: torch.Tensor

    def __getitem__(self, name: str) -> torch.Tensor:
        """The ``[T,H,W,3]`` video of the job called `name`."""
        return self.videos[self.names.index(name)]


class CasperPipeline(common.PipelineComponents):
    """Object-and-effect removal with Casper (CogVideoX-Fun-V1.5-5b-InP fine-tuned with trimask conditioning).

    Components (attributes of the same names): ``transformer`` (`diffusers.CogVideoXTransformer3DModel`, 33 input
    channels, patch_size_t 2), ``vae`` (`diffusers.AutoencoderKLCogVideoX`), ``text_encoder`` (T5 encoder),
    ``tokenizer`` (T5 tokenizer), ``scheduler`` (`diffusers.DDIMScheduler` with the release's config).
    They must already sit where they compute (or be managed by a memory mode's hooks, see `casper_core.memory`);
    `set_execution_device` tells the pipeline where inputs go when the weights are offloaded.
    """

    def __init__(self, transformer, vae, text_encoder, tokenizer, scheduler):
        super().__init__(transformer, vae, text_encoder, tokenizer, scheduler)
        config = transformer.config
        if getattr(config, "patch_size_t", None) is None:
            raise ValueError("transformer: expected a CogVideoX 1.5 transformer (patch_size_t set), got None")
        if config.in_channels != 2 * config.out_channels + 1:
            raise ValueError(
                f"transformer: expected an inpaint transformer with in_channels = 2 × out_channels + 1 "
                f"(33 for CogVideoX-Fun), got in_channels {config.in_channels}, out_channels {config.out_channels}"
            )
        self.vae_scale_factor_spatial = 2 ** (len(vae.config.block_out_channels) - 1)

    @classmethod
    def from_pretrained(cls, base_dir, casper_weights=None, **kwargs) -> "CasperPipeline":
        """Load from the release files; see `casper_core.loading.load_casper_pipeline` for the arguments."""
        from .loading import load_casper_pipeline

        return load_casper_pipeline(base_dir, casper_weights, **kwargs)

    # --- the call ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        video: torch.Tensor,
        jobs,
        *,
        prompt: str = PROMPT,
        negative_prompt: str = "",
        guidance_scale: float = 1.0,
        steps: int = STEPS,
        seed: int = SEED,
        window_frames: int = WINDOW_FRAMES,
        overlap_frames: int = OVERLAP_FRAMES,
        batch_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        live_progress: Callable[[int, int, torch.Tensor | None], None] | None = None,
        height: int | None = None,
        width: int | None = None,
        noise_augmentation: str | Callable[[torch.Tensor], torch.Tensor] = "seeded",
        noise_aug_strength: float = NOISE_AUG_STRENGTH,
        generator: torch.Generator | None = None,
    ) -> CasperResult:
        """Remove what each trimask job marks for removal.

        Args:
            video: ``[T,H,W,3]`` float in 0..1, any T ≥ 1. H and W must be multiples of 16 unless `height` and
                `width` are given. NaN / infinite values and values further than 0.1 outside 0..1 (a 0..255 video)
                are refused; smaller excursions (resizing overshoot) are clamped.
            jobs: `TrimaskJobs`, or a trimask tensor ``[J,T,H,W]`` / ``[T,H,W]`` (1 remove,
                0.5 neutral, 0 keep; snapped at 0.25 / 0.75) at the video's length and size; values must be finite
                and in 0..1.
            prompt: text prompt (the release uses "empty scene").
            negative_prompt: used only with `guidance_scale` > 1 (classifier-free guidance).
            guidance_scale: 1 = no guidance (as released); > 1 runs the negative prompt too.
            steps: DDIM steps.
            seed: seed of the initial noise and of the input-noise augmentation. Every job gets a fresh
                generator with this seed, so a job's output does not depend on the other jobs or the batch size.
            window_frames: temporal window in frames (85 as released); shorter clips are padded to it.
            overlap_frames: window overlap in frames (16 as released: 4 latent frames); it must be shorter than
                the window only when the clip needs more than one window.
            batch_size: jobs per transformer batch; None runs all jobs in one batch.
            progress: ``progress(step, total)`` after every denoising step (total = steps × batches); it may raise
                to interrupt (the run stops after the current step and the exception propagates).
            live_progress: ``live_progress(done, total, preview)`` for a progress bar with live previews: after
                every denoising step with ``preview`` an ``[h,w,3]`` float image in 0..1 (the first job of the batch,
                its predicted clean video at the clip's middle frame, mapped from latents to colour by a linear fit
                on this clip's own latents — see `casper_core.preview`), and after every VAE decode chunk with
                ``preview`` None. ``total`` counts both (steps × batches + decode chunks of every job and tile), so
                one bar covers sampling and decoding. It may raise to interrupt, like `progress`.
            height, width: working resolution (multiples of 16); the video and trimasks are area-resized to it
                and the outputs resized back to the input size. None = the input size.
            noise_augmentation: ``"seeded"`` — Gaussian noise × `noise_aug_strength` on the video before encoding,
                drawn from the job generator; ``"reference"`` — the public reference's draw from the *global* torch
                RNG (seed it with `torch.manual_seed` for a repeatable run; see `reference_input_noise`); ``"none"``;
                or a callable ``f(pixels [1,3,T,H,W] in −1..1) -> noise`` of the same shape. Applied only when the
                transformer config has ``add_noise_in_inpaint_model`` (the release does); pixels at exactly −1 get
                none, as in the reference.
            noise_aug_strength: the augmentation's standard deviation (in −1..1 units).
            generator: a generator shared by all jobs instead of a fresh one per job (the reference's behaviour:
                then a job's noise depends on the jobs before it, and batching changes the result).

        Returns:
            `CasperResult`: ``names`` and ``videos [J,T,H,W,3]`` float32 0..1 on the CPU.
        """
        # 1. Check inputs
        names, trimasks = self.check_inputs(
            video, jobs, guidance_scale, steps, window_frames, overlap_frames, batch_size, height, width,
            noise_augmentation,
        )
        frames, in_height, in_width = video.shape[:3]
        work_height, work_width = height or in_height, width or in_width
        device, dtype = self.execution_device, self.dtype
        do_cfg = guidance_scale > 1.0
        num_jobs = len(names)
        patch_t = self.transformer.config.patch_size_t

        try:
            # 2. Pixels in −1..1 [1,3,Tp,H,W] and trimasks [J,1,Tp,H,W] at the working size, padded to 4k+1
            #    frames (k odd)
            total_frames = padded_length(frames, window_frames)
            pixels, masks = common.prepare_pixels_and_masks(video, trimasks, (work_height, work_width), total_frames)

            # 3. Encode input prompt
            prompt_embeds = self.encode_prompt(prompt)
            negative_embeds = self.encode_prompt(negative_prompt) if do_cfg else None

            # 4. Prepare timesteps
            self.scheduler.set_timesteps(steps, device=device)
            timesteps = self.scheduler.timesteps

            # 5. Noise: one fresh CPU generator per job, all seeded alike, so every job draws the same values
            num_latents = latent_frames(total_frames)
            latent_shape = (
                1, num_latents, self.transformer.config.out_channels,
                work_height // self.vae_scale_factor_spatial, work_width // self.vae_scale_factor_spatial,
            )
            first_generator = common.job_generator(seed, generator)
            # Drawn in (b, f, c, h, w) order, as the reference's randn_tensor.
            noise = [torch.randn(latent_shape, generator=first_generator, dtype=dtype)]
            augmentation = self._augmentation_noise(pixels, noise_augmentation, noise_aug_strength, first_generator)
            noise += common.further_jobs_noise(latent_shape, dtype, generator, num_jobs)

            # 6. Encode the (unmasked) video with the input-noise augmentation
            video_latents = self.encode_video(pixels, augmentation)  # [1,F,16,h,w]
            preview_map = fit_latent_to_rgb(video_latents[0], pixels[0]) if live_progress is not None else None

            # 7. Mask latents: 1 − trimask on the latent grid × scaling factor
            mask_latents = self.mask_latents(masks, video_latents.shape[1], video_latents.shape[-2:])  # [J,F,1,h,w]

            window = window_latent_frames(window_frames, patch_t)
            overlap = overlap_frames // 4
            windows = plan_windows(num_latents, window, overlap, multiple=patch_t)
            rotary = {}
            batches = common.job_batches(num_jobs, batch_size)
            total_steps = steps * len(batches)
            latent_size = (latent_shape[-2], latent_shape[-1])
            live_total = total_steps + num_jobs * decode_units(self.vae, num_latents, *latent_size)
            live_done = 0
            preview_latent = common.middle_latent(frames, num_latents)

            def report_decode():
                nonlocal live_done
                live_done += 1
                live_progress(live_done, live_total, None)

            outputs = []
            for batch_index, job_slice in enumerate(batches):
                count = job_slice.stop - job_slice.start
                latents = common.batch_start_noise(noise, generator is not None, job_slice)
                latents = self._to_device(latents) * self.scheduler.init_noise_sigma
                inpaint_latents = torch.cat(
                    [mask_latents[job_slice], video_latents.expand(count, -1, -1, -1, -1)], dim=2
                ).to(dtype)
                # 8. Denoising loop with temporal multidiffusion
                for i, t in enumerate(timesteps):
                    latents, predicted = self._denoise_step(
                        latents, inpaint_latents, t, prompt_embeds, negative_embeds, guidance_scale,
                        windows, overlap, (work_height, work_width), rotary,
                    )
                    if progress is not None:
                        progress(batch_index * steps + i + 1, total_steps)
                    if live_progress is not None:
                        live_done += 1
                        preview = latents_to_image(predicted[0, preview_latent], preview_map,
                                                   scale=self.vae_scale_factor_spatial)
                        live_progress(live_done, live_total, preview)
                # 9. Decode, crop to the input length, resize to the input size
                for j in range(count):
                    job_latents = latents[j : j + 1]
                    if live_progress is None:
                        decoded = self.decode(job_latents)
                    else:
                        decoded = self.decode(job_latents, progress=report_decode)
                    outputs.append(
                        common.to_output_video(decoded[0], frames, (work_height, work_width), (in_height, in_width))
                    )
        finally:
            self._release()
        return CasperResult(names=names, videos=torch.stack(outputs))

    # --- steps ---------------------------------------------------------------------------------------------------
    def check_inputs(
        self, video, jobs, guidance_scale, steps, window_frames, overlap_frames, batch_size, height, width,
        noise_augmentation,
    ) -> tuple[list[str], torch.Tensor]:
        """Validate every argument before any heavy work; returns the job names and trimasks ``[J,T,H,W]``."""
        names, trimasks = common.check_video_and_jobs(video, jobs)
        frames, in_height, in_width = video.shape[:3]
        if trimasks.shape[1] != frames:
            raise ValueError(f"jobs: trimasks have {trimasks.shape[1]} frames, but the video has {frames}")
        if tuple(trimasks.shape[2:]) != (in_height, in_width):
            raise ValueError(
                f"jobs: trimask size {tuple(trimasks.shape[2:])} (H,W) differs from the video's {(in_height, in_width)}"
            )
        common.check_size_steps_guidance((in_height, in_width), height, width, steps, guidance_scale)
        window = window_latent_frames(window_frames, self.transformer.config.patch_size_t)
        clip_latents = latent_frames(padded_length(frames, window_frames))
        common.check_overlap_frames(overlap_frames, frames, window_frames, window, clip_latents)
        common.check_batch_size(batch_size)
        if not callable(noise_augmentation) and noise_augmentation not in ("seeded", "reference", "none"):
            raise ValueError(
                f"noise_augmentation: expected 'seeded', 'reference', 'none' or a callable, got {noise_augmentation!r}"
            )
        return names, trimasks

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """T5 embeddings ``[1,226,D]`` of `prompt` (padded to 226 tokens, eos appended, no attention mask)."""
        ids = common.tokenize_prompt(self.tokenizer, prompt, MAX_SEQUENCE_LENGTH).input_ids
        embeds = self.text_encoder(self._to_device(ids))[0]
        return embeds.to(device=self.execution_device, dtype=self.dtype)

    def _augmentation_noise(self, pixels, mode, strength, generator) -> torch.Tensor | None:
        if not getattr(self.transformer.config, "add_noise_in_inpaint_model", False) or mode == "none":
            return None
        if mode == "reference":
            return reference_input_noise(pixels.shape, strength)
        if callable(mode):
            noise = mode(pixels)
            if tuple(noise.shape) != tuple(pixels.shape):
                raise ValueError(f"noise_augmentation: returned {tuple(noise.shape)}, expected {tuple(pixels.shape)}")
            return noise
        return torch.randn(pixels.shape, generator=generator, dtype=torch.float32) * strength

    def encode_video(self, pixels: torch.Tensor, augmentation: torch.Tensor | None) -> torch.Tensor:
        """VAE latents ``[1,F,C,h,w]`` (encoder mean × scaling factor) of pixels ``[1,3,T,H,W]`` in −1..1."""
        if augmentation is not None:
            # As the reference: no noise where the pixel is exactly −1 (its masked-out value).
            augmentation = augmentation.to(pixels.device, pixels.dtype)
            pixels = pixels + torch.where(pixels == -1, torch.zeros_like(augmentation), augmentation)
        pixels = self._to_device(pixels, self.vae.dtype)
        latents = self.vae.encode(pixels)[0].mode() * self.vae.config.scaling_factor
        return latents.permute(0, 2, 1, 3, 4).to(self.dtype)

    def mask_latents(self, masks: torch.Tensor, num_latents: int, latent_size) -> torch.Tensor:
        """Mask channel ``[J,F,1,h,w]``: ``1 − trimask`` (keep 1, neutral 128/255, remove 0) on the latent grid,
        × the VAE scaling factor.

        Frame 0 is resized on its own and frames 1.. together (trilinear, align_corners False), as the VAE treats
        the first frame alone.
        """
        inverted = self._to_device(1.0 - masks, torch.float32)  # [J,1,Tp,H,W]
        first = F.interpolate(inverted[:, :, :1], size=(1, *latent_size), mode="trilinear", align_corners=False)
        parts = [first]
        if num_latents > 1:
            parts.append(
                F.interpolate(
                    inverted[:, :, 1:], size=(num_latents - 1, *latent_size), mode="trilinear", align_corners=False
                )
            )
        resized = torch.cat(parts, dim=2) * self.vae.config.scaling_factor
        return resized.permute(0, 2, 1, 3, 4).to(self.dtype)

    def _rotary_embeddings(self, num_latents: int, size, cache: dict):
        config = self.transformer.config
        if not config.use_rotary_positional_embeddings:
            return None
        if num_latents not in cache:
            from diffusers.models.embeddings import get_3d_rotary_pos_embed

            p, p_t = config.patch_size, config.patch_size_t
            cell = self.vae_scale_factor_spatial * p
            cache[num_latents] = get_3d_rotary_pos_embed(
                embed_dim=config.attention_head_dim,
                crops_coords=None,
                grid_size=(size[0] // cell, size[1] // cell),
                temporal_size=(num_latents + p_t - 1) // p_t,
                grid_type="slice",
                max_size=(config.sample_height // p, config.sample_width // p),
                device=self.execution_device,
            )
        return cache[num_latents]

    def _denoise_step(
        self, latents, inpaint_latents, t, prompt_embeds, negative_embeds, guidance_scale, windows, overlap, size,
        rotary,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One DDIM step over all windows; overlapping windows' stepped latents are blended with linear ramps.

        Returns the stepped latents and the scheduler's prediction of the clean latents (blended alike; previews).
        """
        if len(windows) == 1:
            begin, end = windows[0]
            return self._step_window(
                latents[:, begin:end], inpaint_latents[:, begin:end], t, prompt_embeds, negative_embeds,
                guidance_scale, size, rotary,
            )
        num_latents = latents.shape[1]
        canvas = torch.zeros_like(latents, dtype=torch.float32)
        predicted_canvas = torch.zeros_like(latents, dtype=torch.float32)
        weight_sum = torch.zeros(1, num_latents, 1, 1, 1, device=latents.device, dtype=torch.float32)
        for begin, end in windows:
            stepped, predicted = self._step_window(
                latents[:, begin:end], inpaint_latents[:, begin:end], t, prompt_embeds, negative_embeds,
                guidance_scale, size, rotary,
            )
            # Weights in the latents' dtype (bf16-rounded ramps in bf16 runs, as in the reference).
            weights = window_weights(begin, end, num_latents, overlap).to(latents.device, latents.dtype)
            weights = weights.view(1, -1, 1, 1, 1)
            canvas[:, begin:end] += stepped * weights
            predicted_canvas[:, begin:end] += predicted * weights
            weight_sum[:, begin:end] += weights
        return (canvas / weight_sum).to(latents.dtype), predicted_canvas / weight_sum

    def _step_window(
        self, latents, inpaint_latents, t, prompt_embeds, negative_embeds, guidance_scale, size, rotary
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = latents.shape[0]
        embeds = prompt_embeds.expand(batch, -1, -1)
        model_input = torch.cat([latents, inpaint_latents], dim=2)
        if negative_embeds is not None:
            model_input = torch.cat([model_input, model_input])
            embeds = torch.cat([negative_embeds.expand(batch, -1, -1), embeds])
        model_input = self.scheduler.scale_model_input(model_input, t)
        noise_pred = self.transformer(
            hidden_states=model_input,
            encoder_hidden_states=embeds,
            timestep=t.expand(model_input.shape[0]),
            image_rotary_emb=self._rotary_embeddings(latents.shape[1], size, rotary),
            return_dict=False,
        )[0].float()
        if negative_embeds is not None:
            uncond, cond = noise_pred.chunk(2)
            noise_pred = uncond + guidance_scale * (cond - uncond)
        output = self.scheduler.step(noise_pred, t, latents, eta=0.0, return_dict=False)
        stepped = output[0]
        # DDIM-type schedulers also give their prediction of the clean latents; others: the stepped latents.
        predicted = output[1] if len(output) > 1 and output[1] is not None else stepped
        return stepped.to(latents.dtype), predicted

    def decode(self, latents: torch.Tensor, progress: Callable[[], None] | None = None) -> torch.Tensor:
        """Video ``[B,3,4(F−1)+1,H,W]`` in 0..1 (float32) from latents ``[B,F,C,h,w]``, in the reference's chunks.

        ``progress()`` is called after every decoded chunk (see `casper_core.vae_decode.decode_latents`).
        """
        z = latents.permute(0, 2, 1, 3, 4).to(self.vae.dtype) / self.vae.config.scaling_factor
        frames = decode_latents(self.vae, z, progress)
        return (frames.float() / 2 + 0.5).clamp(0, 1)
