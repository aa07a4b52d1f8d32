"""Fitting RGBA omnimatte layers: every object of a video in one optimisation.

For object i the inputs are its *solo* video (background + object i + its effects, e.g. Casper's solo job), the clean
background video and the object's mask. A small U-Net per object predicts, for every frame, an RGB layer and an alpha
such that ``α·rgb + (1 − α)·background`` reconstructs the solo video, while sparsity keeps alpha at zero wherever the
solo video equals the background. What differs from the background but lies outside the object mask — shadows,
reflections, dust — therefore lands in the object's own layer.

Real inputs are not exact composites (two generations, or a temporal-median plate): the background is first aligned
to each solo and the noise left between them measured (``input_alignment``); differences at the noise level neither
start nor pay for opacity, and outside the mask the layer's colour is locally constant (see ``_LayerModel``).

Two stages (supplement Sec. D): ``fit_layers`` at the base resolution, then ``fit_layers_full_res`` at the input's
resolution, initialised from and supervised by the upsampled base layers.
"""
from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from . import losses
from .input_alignment import align_background, gaussian_blur, gradient_magnitude, pixel_noise
from .layers import Layers
from .masks import dilate_masks
from .motion_alpha import MASK_MARGIN as MOTION_MASK_MARGIN
from .motion_alpha import SUPPORT as MOTION_SUPPORT
from .motion_alpha import motion_alpha
from .networks import LayerUNet
from .presets import FitConfig, resolve_config
from .texture_alpha import texture_alpha
from .upsample import upsample_layers

ProgressCallback = Callable[[int, int, "torch.Tensor | None"], None]


@dataclass
class FittedLayers:
    """The fitted layers, on the CPU.

    rgb:   ``[N, T, 3, H, W]`` straight (not premultiplied) colour in 0..1.
    alpha: ``[N, T, 1, H, W]`` opacity in 0..1.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    steps: int
    seconds: float
    config: FitConfig
    device: str = "cpu"
    history: list[dict] = field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return self.rgb.shape[0]

    def to_layers(self, background: torch.Tensor, **fields) -> Layers:
        """These layers over ``background [T,3,H,W]`` (the one they were fitted against) as the validated
        :class:`~omnimatte_core.layers.Layers` that ordering, compositing, editing and export take; ``fields`` are
        ``Layers``' other fields (``order``, ``names``, ``masks``, ``fps``)."""
        return Layers(rgb=self.rgb, alpha=self.alpha, background=background, **fields)


# --------------------------------------------------------------------------------------------------------------------
# Input checks


def _check_video(name: str, x, ndim: int, channels: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != ndim or x.shape[-3] != channels:
        layout = "[N,T,C,H,W]" if ndim == 5 else "[T,C,H,W]"
        raise ValueError(f"{name} must have shape {layout} with C={channels}, got {tuple(x.shape)}")
    if x.numel() == 0:
        what = "at least one object (N >= 1)" if ndim == 5 and x.shape[0] == 0 else "at least one frame and pixel"
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); expected {what}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor with values in 0..1, got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values; expected finite values in 0..1")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"{name} must have values in 0..1, got range [{lo:.4g}, {hi:.4g}]")
    return x


def check_fit_inputs(solos: torch.Tensor, background: torch.Tensor, masks: torch.Tensor) -> None:
    """Raise ``ValueError``/``TypeError`` naming the argument when the inputs of a fit do not fit together."""
    _check_video("solos", solos, 5, 3)
    _check_video("background", background, 4, 3)
    _check_video("masks", masks, 5, 1)
    n, t, _, h, w = solos.shape
    if n < 1:
        raise ValueError("solos must hold at least one object (N >= 1), got N = 0")
    if background.shape[0] != t:
        raise ValueError(f"background has {background.shape[0]} frames but solos have {t}; expected the same count")
    if tuple(background.shape[-2:]) != (h, w):
        raise ValueError(f"background is {tuple(background.shape[-2:])} (H, W) but solos are {(h, w)}; "
                         "expected the same size")
    if masks.shape[0] != n:
        raise ValueError(f"masks has {masks.shape[0]} objects but solos have {n}; expected one mask video per solo")
    if masks.shape[1] != t:
        raise ValueError(f"masks have {masks.shape[1]} frames but solos have {t}; expected the same count")
    if tuple(masks.shape[-2:]) != (h, w):
        raise ValueError(f"masks are {tuple(masks.shape[-2:])} (H, W) but solos are {(h, w)}; expected the same size")
    if min(h, w) < 8:
        raise ValueError(f"solos must be at least 8×8 pixels, got {h}×{w}")
    coverage = (masks > 0.5).flatten(1).float().mean(1)
    for i, c in enumerate(coverage.tolist()):
        if c == 0.0:
            raise ValueError(f"masks[{i}] is empty in every frame; expected the object to be marked in some frame")
        if c == 1.0:
            raise ValueError(f"masks[{i}] covers every pixel of every frame; expected a mask of one object, "
                             "with background around it")


# --------------------------------------------------------------------------------------------------------------------
# Running the networks


def _default_device(device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _stack_objects(x: torch.Tensor) -> torch.Tensor:
    """``[B, N, C, H, W] → [B, N·C, H, W]`` (grouped-convolution layout)."""
    b, n, c, h, w = x.shape
    return x.reshape(b, n * c, h, w)


class _LayerModel:
    """Maps network outputs to RGB and alpha.

    Alpha is ``sigmoid(init_logit + out_α)``. Inside the object mask the colour is the one that makes the layer
    reproduce the solo video exactly at the current alpha, ``bg + (solo − bg)/α``, plus a learned residual
    ``out_rgb``, clamped to 0..1: the object is opaque there and its colour is whatever the solo video shows.

    Outside the mask (shadows, reflections, dust) that tied colour would reproduce the solo video at *any* alpha above
    the least one, so the reconstruction could not tell a 50 % black shadow from an opaque dark patch of ground, nor
    noise from a faint veil. There the colour is instead *locally constant*: the alpha-weighted Gaussian average of
    the tied colour over a neighbourhood (``colour_sigma`` pixels). At the true alpha the tied colour is the effect's
    own colour, smooth, and the average changes nothing; at a wrong alpha it carries the background's texture with
    weight ``1 − α_true/α``, the average smears it, and the reconstruction error grows with the texture — the
    background's texture, attenuated by ``1 − α`` in the solo video, is what measures alpha (the local linear colour
    model of closed-form matting). Noise cannot be reproduced by a smooth colour either, so it stops paying for alpha.
    """

    def __init__(self, net: LayerUNet, colour_sigma: float = 0.0):
        self.net = net
        self.colour_sigma = float(colour_sigma)

    def __call__(self, features: torch.Tensor, solo: torch.Tensor, background: torch.Tensor,
                 init_logit: torch.Tensor, inside: torch.Tensor | None = None):
        """features ``[B,N,F,H,W]``, solo/background ``[B,N,3,H,W]``, init_logit and inside ``[B,N,1,H,W]``
        → rgb, alpha."""
        b, n, _, h, w = features.shape
        out = self.net(_stack_objects(features)).float().reshape(b, n, 4, h, w)
        alpha = torch.sigmoid(init_logit + out[:, :, 3:])
        exact = (background + (solo - background) / alpha.clamp_min(1e-3)).clamp(0.0, 1.0)
        rgb = exact + out[:, :, :3]
        # The residual is clamped in the forward pass only: a hard clamp would stop its gradients for good once a
        # colour overshoots, and it could never come back.
        rgb = rgb + (rgb.clamp(0.0, 1.0) - rgb).detach()
        if self.colour_sigma > 0 and inside is not None:
            # The object's own pixels take no part: its colour is not the effect's, and at a wide neighbourhood
            # it would tint a black shadow beside it with the object's colour.
            effect_weight = alpha * (1.0 - inside)
            weighted = gaussian_blur((effect_weight * exact).reshape(b * n, 3, h, w), self.colour_sigma)
            weight = gaussian_blur(effect_weight.reshape(b * n, 1, h, w), self.colour_sigma)
            smooth = (weighted / weight.clamp_min(1e-4)).clamp(0.0, 1.0).reshape(b, n, 3, h, w)
            rgb = inside * rgb + (1.0 - inside) * smooth
        return rgb, alpha


def _autocast(device: torch.device):
    # bf16 convolutions on the GPU (twice the throughput, same quality for these small nets); fp32 on the CPU.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _mask_weight(config: FitConfig, step: int) -> float:
    if config.mask_off_step is not None:
        return config.mask_weight if step < config.mask_off_step else 0.0
    end = max(1.0, config.mask_decay_end * config.steps)
    return config.mask_weight * max(0.0, 1.0 - step / end)


def _preview(rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The first object's layer of one frame over a checkerboard, ``[H, W, 3]`` on the CPU."""
    rgb, alpha = rgb[0, 0].float(), alpha[0, 0].float()
    h, w = rgb.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h, device=rgb.device), torch.arange(w, device=rgb.device), indexing="ij")
    checker = (((yy // 8) + (xx // 8)) % 2).to(rgb.dtype) * 0.3 + 0.5
    return (alpha * rgb + (1 - alpha) * checker).permute(1, 2, 0).detach().cpu()


def _optimise(
    *,
    config: FitConfig,
    features: torch.Tensor,
    solos: torch.Tensor,
    background: torch.Tensor,
    masks: torch.Tensor,
    init_logit: torch.Tensor,
    alpha_target: torch.Tensor | None,
    alpha_weight_map: torch.Tensor | None,
    seed: int,
    device: torch.device,
    progress: ProgressCallback | None,
    colour_sigma: float = 0.0,
    noise: torch.Tensor | None = None,
    sparsity_map: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """The optimisation loop shared by both stages. All video tensors are ``[T, N, C, H, W]`` on ``device``;
    ``noise = (noise_sigma [N,3], edge_noise [N,3])`` is the noise model between each solo and its background: it
    sets the reconstruction's dead zone at every pixel (``input_alignment.pixel_noise``)."""
    t, n = solos.shape[:2]
    use_tolerance = noise is not None and config.noise_tolerance > 0
    coarse_sigma = config.coarse_recon * min(solos.shape[-2:])
    if use_tolerance:
        flat, edge = ((config.noise_tolerance * x).view(1, n, 3, 1, 1) for x in noise)
    # Network initialisation from the seed without touching the caller's global RNG (ComfyUI seeds it for others).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = LayerUNet(groups=n, in_channels=features.shape[2], width=config.width).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    model = _LayerModel(net, colour_sigma)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    milestones = sorted({max(1, int(round(f * config.steps))) for f in config.lr_milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones=milestones, gamma=config.lr_gamma)
    sampler = torch.Generator().manual_seed(seed)
    batch = min(config.batch_frames, t)

    coverage = masks.transpose(0, 1).reshape(n, -1).mean(1)  # [N]
    sparsity_weight = config.sparsity_weight * (coverage if config.sparsity_by_coverage else torch.ones_like(coverage))
    history: list[dict] = []

    # All frame draws up front: one upload instead of a host-to-device copy (and a GPU sync) every step.
    frame_batches = torch.stack([torch.randperm(t, generator=sampler)[:batch] for _ in range(config.steps)])
    frame_batches = frame_batches.to(device)
    for step in range(config.steps):
        idx = frame_batches[step]
        with _autocast(device):
            rgb, alpha = model(features[idx], solos[idx], background[idx], init_logit[idx], masks[idx])
        composite = losses.over_background(rgb, alpha, background[idx])
        # per batch: a whole-clip map would hold another background-size tensor; one gradient for both dead zones
        grad = gradient_magnitude(background[idx]) if use_tolerance else None
        terms = {
            "recon": losses.reconstruction(composite, solos[idx], config.recon,
                                           pixel_noise(background[idx], flat, edge, grad) if use_tolerance else None),
            "sparsity": sparsity_weight * losses.sparsity(alpha, config.beta_l0, config.beta_l1, config.l0_sharpness,
                                                          None if sparsity_map is None else sparsity_map[idx]),
        }
        mask_w = _mask_weight(config, step)
        if mask_w > 0:
            terms["mask"] = mask_w * losses.mask_supervision(alpha, masks[idx])
        if config.mask_inside_weight > 0:
            terms["mask_inside"] = config.mask_inside_weight * losses.mask_inside(alpha, masks[idx])
        if alpha_target is not None and config.alpha_weight > 0:
            terms["alpha"] = config.alpha_weight * losses.alpha_supervision(
                alpha, alpha_target[idx], alpha_weight_map[idx])
        if use_tolerance and coarse_sigma > 0:
            terms["recon_coarse"] = losses.coarse_reconstruction(
                composite, solos[idx], coarse_sigma,
                pixel_noise(background[idx], flat * _BLUR_NOISE_FACTOR / coarse_sigma, edge, grad))
        loss = sum(v.sum() for v in terms.values())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()

        if step % 25 == 0 or step == config.steps - 1:
            history.append({"step": step, **{k: float(v.detach().sum()) for k, v in terms.items()}})
        if progress is not None:
            preview = None
            if config.preview_every and (step % config.preview_every == 0 or step == config.steps - 1):
                preview = _preview(rgb, alpha)
            progress(step + 1, config.steps, preview)

    # Final layers for every frame, in chunks of the training batch size.
    rgb_out, alpha_out = [], []
    with torch.no_grad():
        for start in range(0, t, max(batch, 1)):
            sl = slice(start, start + batch)
            with _autocast(device):
                rgb, alpha = model(features[sl], solos[sl], background[sl], init_logit[sl], masks[sl])
            rgb_out.append(rgb.float().cpu())
            alpha_out.append(alpha.float().cpu())
    del net, model, optimiser, scheduler
    return torch.cat(rgb_out).transpose(0, 1).contiguous(), torch.cat(alpha_out).transpose(0, 1).contiguous(), history


def _release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _inputs_on_device(device: torch.device, **videos) -> list[torch.Tensor]:
    """The input videos moved to ``device`` as they are (dtype unchanged), after a type check: the value checks then
    run where the data is — a pass over a gigabyte of 1080p frames takes seconds on a CPU, milliseconds on a GPU."""
    moved = []
    for name, x in videos.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        moved.append(x.detach().to(device))
    return moved


def _to_frames_first(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``[N, T, C, H, W]`` (any tensor, inference tensors included) → a fresh ``[T, N, C, H, W]`` fp32 copy."""
    return x.detach().to(device=device, dtype=torch.float32).transpose(0, 1).contiguous().clone()


def minimal_alpha(solo: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """The least opacity with which some colour in 0..1 over ``background`` gives ``solo`` (colour unmixing).

    ``solo``/``background`` ``[..., 3, H, W]`` → ``[..., 1, H, W]``. Per channel, a layer darker than the background
    needs ``α ≥ (bg − solo)/bg`` (a black layer), a brighter one ``α ≥ (solo − bg)/(1 − bg)`` (a white layer); the
    pixel needs the largest of them. Exactly the alpha of a black shadow, 0 where nothing changed.
    """
    return _channel_alpha(solo, background).amax(dim=-3, keepdim=True)


def _channel_alpha(solo: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Per channel, the least opacity of a black (darker) or white (brighter) layer that gives ``solo``."""
    return ((solo - background).abs() / _channel_headroom(solo, background)).clamp(0.0, 1.0)


def _features(solo: torch.Tensor, background: torch.Tensor, min_alpha: torch.Tensor, config: FitConfig):
    """Per-object network input ``[T,N,7,H,W]``: the solo frame, the amplified difference to the background (small
    differences are what shadows and reflections leave, and an unamplified 0.02 is invisible to a fresh network),
    and the least opacity that explains the difference."""
    return torch.cat([solo, config.difference_gain * (solo - background), min_alpha], dim=2)


def _prepare_inputs(solos: torch.Tensor, background: torch.Tensor, masks: torch.Tensor, config: FitConfig,
                    dev: torch.device):
    """Frames-first fp32 copies ``[T,N,C,H,W]`` of the solos, the background (per object: aligned to that solo when
    ``config.align_inputs``, see ``input_alignment``) and the binary masks, and the noise model between each solo
    and its background: ``(noise_sigma [N,3], edge_noise [N,3])``, the former at least ``config.noise_floor`` (both
    zeros when not aligned; see ``input_alignment.pixel_noise``)."""
    solo_t = _to_frames_first(solos, dev)
    mask_t = (_to_frames_first(masks, dev) > 0.5).float()
    n = solo_t.shape[1]
    if config.align_inputs:
        alignment = align_background(solos.float(), background.float(), masks, estimate_shift=config.align_shift)
        bg_t = alignment.background.transpose(0, 1).contiguous()
        noise = (alignment.noise_sigma.clamp_min(config.noise_floor), alignment.edge_noise)
        del alignment
    else:
        bg_t = background.detach().to(device=dev, dtype=torch.float32).unsqueeze(1).expand_as(solo_t).contiguous()
        noise = (torch.zeros(n, 3, device=dev), torch.zeros(n, 3, device=dev))
    return solo_t, bg_t, mask_t, noise


# Noise of one pixel, after a Gaussian blur of sigma 1 px, has this fraction of its standard deviation (white noise).
_BLUR_NOISE_FACTOR = 1.0 / (2.0 * math.sqrt(math.pi))


def _start_channel_alpha(solo: torch.Tensor, background: torch.Tensor, noise: tuple[torch.Tensor, torch.Tensor],
                         config: FitConfig) -> torch.Tensor:
    """The least opacity that explains the solo video once noise is set aside. A difference to the background larger
    than ``noise_threshold`` noise standard deviations is kept as it is; a smaller one is blurred by 1 px and shrunk
    towards 0 by that many standard deviations of the blurred noise, so differences at the noise level start at
    alpha 0 while faint but extended effects survive. Per channel: ``[T,N,3,H,W]`` → ``[T,N,3,H,W]``; the pixel's
    start alpha is their largest (``_start_alpha``)."""
    diff = solo - background
    if config.noise_threshold > 0:
        t, n, c, h, w = diff.shape
        flat, edge = (x.view(1, n, 3, 1, 1) for x in noise)
        edge_part = (edge * gradient_magnitude(background)).square()
        sigma = (flat.square() + edge_part).sqrt()
        blurred = gaussian_blur(diff.reshape(t * n, c, h, w), 1.0).reshape(t, n, c, h, w)
        # blurring divides white noise by ~3.5; what misalignment leaves on edges is smooth and stays
        blurred_sigma = ((_BLUR_NOISE_FACTOR * flat).square() + edge_part).sqrt()
        shrunk = blurred.sign() * (blurred.abs() - config.noise_threshold * blurred_sigma).clamp_min(0.0)
        # Differences far above the noise, in a neighbourhood that is above it too (not a lone noise speckle), keep
        # their own sharp value: exact inputs keep the exact least opacity.
        sharp = (diff.abs() > config.noise_threshold * sigma) & (shrunk != 0)
        diff = torch.where(sharp, diff, shrunk)
    return _channel_alpha((background + diff).clamp(0.0, 1.0), background)


# How far (opacity) the texture's reading must exceed the least opacity before the start begins to follow it, and
# where it follows it fully: a reading near the least opacity is the same answer, and no reason to move.
_TEXTURE_MARGIN = (0.05, 0.15)
# Share of its neighbourhood (the reading's own pooling width) that must call for a lift too.
_TEXTURE_SUPPORT = 0.5


TEXTURE_POOL_MIN_PX = 5.0
"""Least Gaussian width (pixels) of the texture reading's neighbourhood, whatever ``config.texture_pool`` gives. The
reading's noise depends on how many independent detail samples (a band 1-3 px wide) the neighbourhood holds, so on
pixels, not on the frame's share: at 4 % of a 96-px frame (3.8 px) the seed-1 dust's recall under ``combined4`` was
0.80-0.83 over four H200 runs, 0.85-0.86 over three at 5 px. A wider neighbourhood also blurs the reading over an
effect's own variation: at 6 px the exact-input dust's alpha error rose from 0.036-0.046 to 0.049-0.057 (0.040-0.043
at 5 px). From 125 px up the fraction is the larger."""


def _texture_pool(config: FitConfig, h: int, w: int) -> float:
    """The texture reading's neighbourhood (Gaussian width in pixels) for frames ``h × w``."""
    return max(_motion_pool(config, h, w), TEXTURE_POOL_MIN_PX)


def _motion_pool(config: FitConfig, h: int, w: int) -> float:
    """The motion reading's neighbourhood: the frame's share alone. A larger one holds more of a reflection's
    non-rigid motion (a 6-px floor raised the reflection's alpha error under `combined` at 96 px from 0.090 to
    0.097)."""
    return config.texture_pool * min(h, w)


def _readings(solo: torch.Tensor, background: torch.Tensor, masks: torch.Tensor, channel_alpha: torch.Tensor,
              noise: tuple[torch.Tensor, torch.Tensor], config: FitConfig
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None] | None:
    """The opacity read from the background's texture showing through each frame (``texture_alpha``,
    ``[T,N,1,H,W]``), and the opacity and its trust read from the background's change under a moving layer
    (``motion_alpha``, ``None`` when ``config.motion_reading`` is off); ``None`` when ``config.texture_pool`` is 0."""
    if config.texture_pool <= 0:
        return None
    texture = texture_alpha(solo, background, masks, noise[0], _texture_pool(config, *solo.shape[-2:]))
    if not config.motion_reading:
        return texture, None
    return texture, motion_alpha(solo, background, masks, channel_alpha.amax(dim=-3, keepdim=True), noise[0],
                                 _motion_pool(config, *solo.shape[-2:]))


def _lift_by_texture(channel_alpha: torch.Tensor, readings, config: FitConfig
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The per-channel start alphas ``[T,N,3,H,W]`` raised to the opacity that the texture reading (``_readings``)
    gives where that is clearly above the least opacity, and how far each pixel follows the reading, ``[T,N,1,H,W]``
    in 0..1 (``None`` when there are no readings). The motion reading does not lift the start: the fit would pull a
    textured layer's alpha back down from it (``_apply_motion_anchor``).

    The least opacity is exact for a black shadow but only a lower bound for a tinted layer, and the fit stays near
    its start wherever the inputs' noise hides the texture that would move it: dust close to the ground's colour
    (least opacity 0.06, true 0.24) was fitted at half its alpha under noise of 4/255 (recall 0.49–0.54)."""
    if readings is None:
        return channel_alpha, None
    reading = readings[0]
    start = channel_alpha.amax(dim=-3, keepdim=True)
    pool = _texture_pool(config, *channel_alpha.shape[-2:])
    low, high = _TEXTURE_MARGIN
    follow = ((reading - start - low) / (high - low)).clamp(0.0, 1.0)
    # A reading is an average over a neighbourhood; one that most of its neighbourhood does not share is a stray
    # (a few pixels at another layer's edge, a dim patch of texture) and would only perturb that layer's fit.
    t, n, _, h, w = follow.shape
    shared = gaussian_blur((follow > 0).float().reshape(t * n, 1, h, w), pool).reshape(follow.shape)
    follow = follow * (shared >= _TEXTURE_SUPPORT)
    lifted = start + follow * (reading - start).clamp_min(0.0)
    # only where the reading counts: elsewhere each channel keeps its own least opacity (their spread is what
    # lightens sparsity for a coloured change, see _coloured)
    return torch.where(follow > 0, torch.maximum(channel_alpha, lifted), channel_alpha), follow


# Width of the fill (multiples of the reading's pooling width), and the share of it that must hold readings.
_ANCHOR_FILL = (1.0, 0.1)
# How far (opacity) the neighbourhood's reading must exceed its mean least opacity before alpha is anchored to it, and
# where the anchor holds fully.
_ANCHOR_MARGIN = (0.03, 0.08)
# Fitted opacity below which the anchor holds only in part (in proportion).
_ANCHOR_FIT_FLOOR = 0.01


def _motion_anchor(readings, channel_alpha: torch.Tensor, masks: torch.Tensor,
                   config: FitConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Where a moving layer's opacity, read from the background's change under it, is clearly above the least
    opacity: that opacity, ``[T,N,1,H,W]``, and how much it holds there (0..1, same shape). ``None`` when off or
    nowhere. Readings cover part of the effect under noise; they are spread over the effect by a normalised blur,
    since the effect's alpha varies slowly compared with its colour."""
    if readings is None or readings[1] is None:
        return None
    texture, (alpha, trust) = readings
    t, n, _, h, w = alpha.shape
    start = channel_alpha.amax(dim=-3, keepdim=True)
    pool = _motion_pool(config, h, w)
    width = _ANCHOR_FILL[0] * pool
    # the effect's pixels, holes closed: under noise the faint parts of an effect start at 0 in places
    effect = (start > MOTION_SUPPORT).float()
    effect = (gaussian_blur(effect.reshape(t * n, 1, h, w), pool).reshape(effect.shape) > 0.5) | (effect > 0)
    # nor next to the object, whose antialiased edge (its own colour) lies just outside the mask
    effect = effect & ~dilate_masks(masks > 0.5, 2 * MOTION_MASK_MARGIN + 1)

    def spread(x):
        return gaussian_blur((x * effect).reshape(t * n, 1, h, w), width).reshape(t, n, 1, h, w)

    area = spread(torch.ones_like(start)).clamp_min(1e-6)
    held_area = spread(trust)
    # a pixel's own reading as far as it is trusted, the neighbourhood's where it is not (the fill is wider than the
    # reading and would flatten an effect that fades with distance)
    filled = spread(alpha * trust) / held_area.clamp_min(1e-6)
    target = trust * alpha + (1.0 - trust) * filled
    share = held_area / area
    # decided on the neighbourhood, like the reading itself: the least opacity of a textured layer varies from pixel
    # to pixel, its alpha does not
    least = spread(start) / area
    low, high = _ANCHOR_MARGIN
    weight = ((filled - least - low) / (high - low)).clamp(0.0, 1.0) * (share > _ANCHOR_FILL[1]) * effect
    # Where the single-frame reading holds, the layer's colour is locally constant (dust) and the fit's own colour
    # model measures alpha pixel by pixel; the anchor would flatten its grain to the pooled reading and let noise into
    # its exact colour (measured: dust alpha error 0.047 → 0.081 under noise of 4/255).
    weight = weight * (1.0 - spread((texture > 0).float()) / area).clamp(0.0, 1.0)
    if not bool(weight.any()):
        return None
    return target.clamp(0.0, 1.0), weight


def _apply_motion_anchor(rgb: torch.Tensor, alpha: torch.Tensor, anchor, solo: torch.Tensor,
                         background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fitted layers ``[N,T,C,H,W]`` with alpha set to the motion reading where it holds (``_motion_anchor``,
    blended by its weight), and the colour there the one that reproduces the solo at that alpha.

    Outside the mask the fit's colour is locally constant (``_LayerModel``), so alpha must carry whatever texture the
    layer's colour has: a reflection (the mirrored object) was fitted with its alpha following that texture down
    towards the least opacity, 0.13 below the truth even from a start at the true alpha. The motion reading does not
    depend on the colour. Applied after the fit, not as a term in it: held in the objective (with the colour there
    free), it made the shared network raise alpha over the whole frame under noise (false opacity 1 % → 3–5 %) and
    pushed black shadows off their alpha (error 0.01 → 0.09)."""
    if anchor is None:
        return rgb, alpha
    target, weight = (x.transpose(0, 1).float().cpu() for x in anchor)
    # Only where the fit gave some opacity: the reading spread over an effect's holes also reaches a few stray pixels
    # beside it (measured: false opacity under the combined degradations +0.3-0.4 % without this, +0.15 % with it).
    weight = weight * (alpha / _ANCHOR_FIT_FLOOR).clamp(0.0, 1.0)
    solo, background = (x.transpose(0, 1).float().cpu() for x in (solo, background))
    anchored = weight * target + (1.0 - weight) * alpha
    exact = (background + (solo - background) / anchored.clamp_min(1e-3)).clamp(0.0, 1.0)
    return torch.where(weight > 0, exact, rgb), anchored


def _start_alpha(solo: torch.Tensor, background: torch.Tensor, noise: tuple[torch.Tensor, torch.Tensor],
                 config: FitConfig) -> torch.Tensor:
    """The start alpha, ``[T,N,1,H,W]``: the largest of ``_start_channel_alpha``'s."""
    return _start_channel_alpha(solo, background, noise, config).amax(dim=-3, keepdim=True)


# Spread of the per-channel least opacities over which sparsity falls from its full weight to its floor, and the
# blur (pixels) applied to them first.
_CHROMATIC_SPREAD = (0.02, 0.06)
_CHROMATIC_BLUR = 3.0


def _channel_headroom(solo: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Per channel, how far the background can be darkened (its value) or lightened (1 − its value) towards the
    solo: the denominator of that channel's least opacity (``_channel_alpha``), ``[T,N,3,H,W]``."""
    return torch.where(solo < background, background, 1.0 - background).clamp_min(1e-3)


def _coloured(channel_alpha: torch.Tensor, headroom: torch.Tensor | None,
              tinted: torch.Tensor | None = None) -> torch.Tensor:
    """How far each change is coloured, ``[T,N,1,H,W]`` in 0..1: 0 for a pure darkening or lightening of the
    background, 1 where the per-channel least opacities ``[T,N,3,H,W]`` spread by ``_CHROMATIC_SPREAD[1]`` or more,
    or where ``tinted`` (0..1, other evidence: the texture reading, ``_lift_by_texture``) says so.

    The spread is taken in colour units (each channel's deviation scaled by its ``headroom``, normalised to their
    root mean square; ``None``: equal weights). The same colour noise is a larger opacity in a dark channel: JPEG's
    error on a black shadow over ground whose blue is 0.14 read as a 0.08 spread in blue alone, and half the shadow
    counted as coloured (mean 0.23–0.27 under JPEG, noise 4/255 and the combinations; 0.12 on exact inputs)."""
    shape = channel_alpha.shape
    flat = (-1, *shape[-3:])
    # averaged over a few pixels first: noise left in the per-channel values would read as colour
    smooth = gaussian_blur(channel_alpha.reshape(flat), _CHROMATIC_BLUR).reshape(shape)
    if headroom is not None:
        weight = gaussian_blur(headroom.reshape(flat), _CHROMATIC_BLUR).reshape(shape)
        weight = weight / weight.square().mean(dim=-3, keepdim=True).sqrt()
        smooth = (smooth - _weighted_mean(smooth, weight)) * weight
    spread = smooth.amax(dim=-3, keepdim=True) - smooth.amin(dim=-3, keepdim=True)
    coloured = ((spread - _CHROMATIC_SPREAD[0]) / (_CHROMATIC_SPREAD[1] - _CHROMATIC_SPREAD[0])).clamp(0.0, 1.0)
    return coloured if tinted is None else torch.maximum(coloured, tinted)


def _weighted_mean(channel_alpha: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``Σ w²·α / Σ w²`` over the channels: the least-squares opacity of a black (white) layer, each channel's colour
    difference counted alike."""
    w2 = weight.square()
    return (w2 * channel_alpha).sum(dim=-3, keepdim=True) / w2.sum(dim=-3, keepdim=True)


def _start_opacity(channel_alpha: torch.Tensor, headroom: torch.Tensor | None,
                   coloured: torch.Tensor) -> torch.Tensor:
    """The fit's start alpha ``[T,N,1,H,W]`` from the per-channel least opacities ``[T,N,3,H,W]``.

    A coloured change starts at the largest of them (the least opacity: any less cannot reproduce the solo). For a
    pure darkening or lightening every channel measures the same alpha, and their largest is biased up by the noise
    in each: under JPEG a black shadow started 0.043 too high and the fit ended 0.078 too high. There the start is the
    least-squares opacity of a black (white) layer (``_weighted_mean``; plain largest when ``headroom`` is ``None``)."""
    largest = channel_alpha.amax(dim=-3, keepdim=True)
    if headroom is None:
        return largest
    pure = _weighted_mean(channel_alpha, headroom)
    return pure + coloured * (largest - pure)


def _sparsity_map(coloured: torch.Tensor, config: FitConfig) -> torch.Tensor | None:
    """Per-pixel factor on sparsity, ``[T,N,1,H,W]``, from how far each change is coloured (``_coloured``): 1 for a
    pure darkening or lightening, falling to ``config.sparsity_on_differences`` for a coloured change.

    Where every channel needs the same opacity the change is a pure darkening (or lightening) of the background: a
    black (white) layer reproduces it exactly at that opacity and at no other alpha with one colour, so that opacity
    is the answer and sparsity only holds it there against noise. Where the channels disagree the change is coloured
    (a reflection's tint, brown dust): the least opacity is only a lower bound, and a full pull towards it fits such
    effects at about half their alpha (measured: effect alpha error 0.15 for a reflection, 0.11 for dust on exact
    composites), so sparsity is lightened there and the background's texture decides. Noise-level differences are 0
    in every channel (``_start_channel_alpha``) and keep full sparsity.

    Changes the texture reading marks as tinted count as coloured (``_coloured``'s ``tinted``): the lift gives every
    channel the same start there, which would read as a pure darkening, and a layer whose colour is close to the
    ground's has too little spread to show it anyway. Full sparsity there pulled dust under the combined degradations
    from its lifted start (0.135) down to 0.067 (true 0.1–0.2), where the noise's dead zone leaves the reconstruction
    nothing to hold it with. ``None`` when uniform."""
    floor = config.sparsity_on_differences
    if floor >= 1.0:
        return None
    return (1.0 - (1.0 - floor) * coloured).to(torch.bfloat16 if coloured.is_cuda else coloured.dtype)


def _colour_sigma(config: FitConfig, size) -> float:
    """Pixels of the Gaussian that makes effect colours locally constant (0: the colour is tied to alpha)."""
    return 0.0 if config.colour_smoothing <= 0 else max(1.0, config.colour_smoothing * min(size))


def _logit(p: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


# --------------------------------------------------------------------------------------------------------------------
# Public API


def fit_layers(
    solos: torch.Tensor,
    background: torch.Tensor,
    masks: torch.Tensor,
    *,
    preset: str | FitConfig = "default",
    steps: int | None = None,
    seed: int = 0,
    device=None,
    progress: ProgressCallback | None = None,
    **overrides,
) -> FittedLayers:
    """Fit one RGBA layer per object at the inputs' resolution (the base stage).

    Args:
        solos: ``[N, T, 3, H, W]`` in 0..1 — per object, the video with only that object (and its effects).
        background: ``[T, 3, H, W]`` in 0..1 — the clean background video.
        masks: ``[N, T, 1, H, W]`` in 0..1 — per object, its mask (object only; effects are found by the fit).
        preset: ``"default"``, ``"preview"``, ``"paper"`` or a ``FitConfig``.
        steps: optimiser steps (overrides the preset's).
        seed: seeds network initialisation and frame sampling; identical inputs and seed give identical layers on the
            CPU (GPU convolutions may differ in the last bits).
        device: torch device; default CUDA when available.
        progress: ``progress(step, total, preview)`` after each step; ``preview`` is an ``[H, W, 3]`` image every
            ``preview_every`` steps, else None. If it raises (e.g. on a user interrupt), fitting stops at once and the
            exception propagates.
        **overrides: any ``FitConfig`` field (``lr``, ``batch_frames``, ``sparsity_weight``, …).

    Works inside ``torch.inference_mode()`` (as ComfyUI runs nodes): gradients are enabled locally and inputs copied.
    Returns layers on the CPU; GPU memory used by the fit is released before returning.
    """
    config = resolve_config(preset, "base", steps, **overrides)
    dev = _default_device(device)
    started = time.perf_counter()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            solos, background, masks = _inputs_on_device(dev, solos=solos, background=background, masks=masks)
            check_fit_inputs(solos, background, masks)
            solo_t, bg_t, mask_t, noise = _prepare_inputs(solos, background, masks, config, dev)
            del solos, background, masks  # the device copies; the frames-first versions replace them
            # Opaque inside the mask from the start: otherwise the term that holds alpha at 1 there drags the whole
            # network's output up in its first steps, and translucent effects come out nearly opaque.
            channel_alpha = _start_channel_alpha(solo_t, bg_t, noise, config)
            readings = _readings(solo_t, bg_t, mask_t, channel_alpha, noise, config)
            anchor = _motion_anchor(readings, channel_alpha, mask_t, config)
            channel_alpha, tinted = _lift_by_texture(channel_alpha, readings, config)
            del readings
            headroom = _channel_headroom(solo_t, bg_t) if config.weigh_channels else None
            coloured = _coloured(channel_alpha, headroom, tinted)
            sparsity_map = _sparsity_map(coloured, config)
            amin = torch.maximum(_start_opacity(channel_alpha, headroom, coloured), mask_t)
            del channel_alpha, tinted, headroom, coloured
            features = _features(solo_t, bg_t, amin, config)
            # Start from the least-opacity layer (exact for black shadows, 0 where nothing changed beyond the noise)
            # rather than from alpha 0.5 everywhere: the fit then only has to close object interiors and refine.
            init_logit = _logit(amin, 1e-3) if config.init_from_minimal_alpha else torch.zeros_like(amin)
            rgb, alpha, history = _optimise(
                config=config, features=features, solos=solo_t, background=bg_t, masks=mask_t,
                init_logit=init_logit, alpha_target=None, alpha_weight_map=None,
                seed=seed, device=dev, progress=progress, colour_sigma=_colour_sigma(config, solo_t.shape[-2:]),
                noise=noise, sparsity_map=sparsity_map,
            )
            rgb, alpha = _apply_motion_anchor(rgb, alpha, anchor, solo_t, bg_t)
            del solo_t, bg_t, mask_t, features, init_logit, amin, sparsity_map, anchor
    finally:
        _release_memory(dev)
    return FittedLayers(rgb=rgb, alpha=alpha, steps=config.steps, seconds=time.perf_counter() - started,
                        config=config, device=str(dev), history=history)


def fit_layers_full_res(
    solos_hr: torch.Tensor,
    background_hr: torch.Tensor,
    masks_hr: torch.Tensor,
    base: "FittedLayers | Layers",
    *,
    preset: str | FitConfig = "default",
    steps: int | None = None,
    seed: int = 0,
    device=None,
    progress: ProgressCallback | None = None,
    **overrides,
) -> FittedLayers:
    """Bootstrapped full-resolution fit (supplement Sec. D, "Upsampling optimization").

    Starts from the bilinearly upsampled base layers (RGB and alpha), supervises alpha with the upsampled base alpha
    (λ_alpha) everywhere except a band around alpha edges, and uses an L1 reconstruction loss, which is robust to
    details an upsampler may have hallucinated.

    Args:
        solos_hr, background_hr, masks_hr: as in ``fit_layers``, at the full resolution.
        base: the result of ``fit_layers`` on the base-resolution versions of the same videos (same N and T), or
            the ``Layers`` made from it (only its ``rgb`` and ``alpha`` are read).
        Other arguments as in ``fit_layers``; the preset's ``full_res`` settings are used.
    """
    config = resolve_config(preset, "full_res", steps, **overrides)
    if not isinstance(base, (FittedLayers, Layers)):
        raise TypeError(f"base must be the FittedLayers returned by fit_layers (or Layers made from it), "
                        f"got {type(base).__name__}")
    dev = _default_device(device)
    started = time.perf_counter()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            solos_hr, background_hr, masks_hr = _inputs_on_device(
                dev, solos_hr=solos_hr, background_hr=background_hr, masks_hr=masks_hr)
            check_fit_inputs(solos_hr, background_hr, masks_hr)
            n, t, _, h, w = solos_hr.shape
            if base.rgb.shape[:2] != (n, t):
                raise ValueError(f"base has {base.rgb.shape[0]} layers × {base.rgb.shape[1]} frames but solos_hr has "
                                 f"{n} × {t}; expected the same objects and frames")
            scale = max(h / base.rgb.shape[-2], w / base.rgb.shape[-1])
            up_rgb, up_alpha = upsample_layers(base.rgb, base.alpha, (h, w))
            solo_t, bg_t, mask_t, noise = _prepare_inputs(solos_hr, background_hr, masks_hr, config, dev)
            del solos_hr, background_hr, masks_hr  # the device copies; the frames-first versions replace them
            up_rgb_t = _to_frames_first(up_rgb, dev)
            up_alpha_t = _to_frames_first(up_alpha, dev)
            band = losses.edge_band(up_alpha_t, config.edge_band + int(math.ceil(scale)), scale)
            features = torch.cat([_features(solo_t, bg_t, _start_alpha(solo_t, bg_t, noise, config), config),
                                  up_rgb_t, up_alpha_t], dim=2)
            rgb, alpha, history = _optimise(
                config=config, features=features, solos=solo_t, background=bg_t, masks=mask_t,
                init_logit=_logit(up_alpha_t), alpha_target=up_alpha_t,
                alpha_weight_map=1.0 - band, seed=seed, device=dev, progress=progress,
                colour_sigma=_colour_sigma(config, solo_t.shape[-2:]), noise=noise,
            )
            del solo_t, bg_t, mask_t, up_rgb_t, up_alpha_t, band, features
    finally:
        _release_memory(dev)
    return FittedLayers(rgb=rgb, alpha=alpha, steps=config.steps, seconds=time.perf_counter() - started,
                        config=config, device=str(dev), history=history)
