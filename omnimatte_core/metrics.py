"""Quality measures for fitted layers against a synthetic scene's ground truth (pure torch).

Conventions: images and alphas are float in 0..1, videos ``[T,C,H,W]``, layer stacks ``[N,T,C,H,W]``.
Every function returns a Python float; inputs may live on any device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["psnr", "alpha_mae", "effect_recall", "object_recall", "empty_region", "false_opacity", "masked_alpha_error",
           "cross_talk", "layer_quality"]

EMPTY_MARGIN = 3
"""Pixels this far (or farther) from any non-zero true alpha count as *empty* for :func:`false_opacity`."""
FALSE_OPACITY_THRESHOLD = 0.05
"""Alpha above this counts as opacity where the layer should be empty (the same level as effect recall's cover)."""


def _check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"{name_a} and {name_b} must be torch tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"{name_a} shape {tuple(a.shape)} must equal {name_b} shape {tuple(b.shape)}")


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in 0..1 (peak 1), over all elements.

    Returns ``inf`` when ``pred`` equals ``target`` exactly."""
    _check_same_shape("pred", pred, "target", target)
    mse = torch.mean((pred.double() - target.double().to(pred.device)) ** 2).item()
    if mse == 0:
        return math.inf
    return -10.0 * math.log10(mse)


def alpha_mae(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Mean absolute alpha error over all pixels (0..1)."""
    _check_same_shape("pred", pred, "gt", gt)
    return torch.mean(torch.abs(pred.double() - gt.double().to(pred.device))).item()


def effect_recall(pred_alpha: torch.Tensor, effect_alpha: torch.Tensor, object_mask: torch.Tensor,
                  effect_thresh: float = 0.1, cover_thresh: float = 0.05) -> float:
    """Share of effect pixels that the predicted layer covers.

    Effect pixels are those with ``effect_alpha > effect_thresh`` outside the object mask (``object_mask <= 0.5``);
    a pixel is covered when ``pred_alpha > cover_thresh``. All three tensors have one shape (e.g. ``[T,1,H,W]``).
    Returns ``nan`` when there is no effect pixel (nothing to recall), so callers can tell "none" from "missed".
    """
    _check_same_shape("pred_alpha", pred_alpha, "effect_alpha", effect_alpha)
    _check_same_shape("pred_alpha", pred_alpha, "object_mask", object_mask)
    device = pred_alpha.device
    region = (effect_alpha.to(device) > effect_thresh) & (object_mask.to(device) <= 0.5)
    count = int(region.sum().item())
    if count == 0:
        return math.nan
    return (pred_alpha[region] > cover_thresh).double().mean().item()


def object_recall(pred_alpha: torch.Tensor, object_mask: torch.Tensor, cover_thresh: float = 0.5) -> float:
    """Share of object-mask pixels (``object_mask > 0.5``) where ``pred_alpha > cover_thresh``; ``nan`` if the mask
    is empty."""
    _check_same_shape("pred_alpha", pred_alpha, "object_mask", object_mask)
    region = object_mask.to(pred_alpha.device) > 0.5
    if not bool(region.any()):
        return math.nan
    return (pred_alpha[region] > cover_thresh).double().mean().item()


def empty_region(true_alpha: torch.Tensor, margin: int = EMPTY_MARGIN) -> torch.Tensor:
    """Boolean map of pixels at least ``margin`` pixels (Chebyshev) from any pixel with ``true_alpha > 0``.

    ``true_alpha [..., H, W]``; the margin keeps antialiased and blurred edges out of the "empty" count."""
    occupied = (true_alpha > 0).float()
    shape = occupied.shape
    flat = occupied.reshape(-1, 1, *shape[-2:])
    if margin > 0:
        flat = F.max_pool2d(flat, kernel_size=2 * margin + 1, stride=1, padding=margin)
    return flat.reshape(shape) == 0


def false_opacity(pred_alpha: torch.Tensor, true_alpha: torch.Tensor, margin: int = EMPTY_MARGIN,
                  threshold: float = FALSE_OPACITY_THRESHOLD) -> tuple[float, float]:
    """Opacity where the layer should be empty: ``(share of empty pixels with alpha > threshold, mean alpha there)``.

    A metric that reconstruction cannot satisfy: noise, compression or misalignment between solo and background can
    be "explained" by a veil of small alpha, which no composite PSNR sees. ``nan, nan`` if nothing is empty."""
    _check_same_shape("pred_alpha", pred_alpha, "true_alpha", true_alpha)
    region = empty_region(true_alpha.to(pred_alpha.device), margin)
    if not bool(region.any()):
        return math.nan, math.nan
    values = pred_alpha[region].double()
    return (values > threshold).double().mean().item(), values.mean().item()


def masked_alpha_error(pred_alpha: torch.Tensor, true_alpha: torch.Tensor, region: torch.Tensor) -> float:
    """Mean ``|pred − true|`` alpha over the pixels where ``region`` is true; ``nan`` for an empty region."""
    _check_same_shape("pred_alpha", pred_alpha, "true_alpha", true_alpha)
    _check_same_shape("pred_alpha", pred_alpha, "region", region)
    region = region.to(pred_alpha.device).bool()
    if not bool(region.any()):
        return math.nan
    return (pred_alpha[region].double() - true_alpha.to(pred_alpha.device)[region].double()).abs().mean().item()


def cross_talk(alpha: torch.Tensor, scene, effect_thresh: float = 0.1) -> list[float]:
    """Per layer i, the mean alpha of layer i on the *other* objects' effect pixels (effect alpha of some j ≠ i above
    ``effect_thresh``) where layer i's own true alpha is 0: how much of another object's shadow or reflection
    leaked into this layer. ``nan`` for a layer with no such pixel (one object, or effects never apart)."""
    n = alpha.shape[0]
    device = alpha.device
    effects = scene.effect_alpha.to(device) > effect_thresh
    values = []
    for i in range(n):
        others = torch.zeros_like(effects[i])
        for j in range(n):
            if j != i:
                others |= effects[j]
        region = others & (scene.layer_alpha[i].to(device) == 0)
        values.append(alpha[i][region].double().mean().item() if bool(region.any()) else math.nan)
    return values


def layer_quality(rgb: torch.Tensor, alpha: torch.Tensor, scene) -> list[dict]:
    """Score fitted layers ``rgb [N,T,3,H,W]`` (straight colour), ``alpha [N,T,1,H,W]`` against a
    :class:`~omnimatte_core.synthetic.SyntheticScene`.

    Per object:

    - ``composite_psnr`` (dB) of ``alpha*rgb + (1-alpha)*background`` against the solo video, both the *exact* ones
      (a degraded scene's clean versions): it measures the layer, not how well it copied the noise;
    - ``alpha_mae`` against ``scene.layer_alpha`` (object + effect) over all pixels, and split by region:
      ``alpha_mae_object`` (inside the object mask), ``effect_alpha_error`` (on effect pixels: effect alpha > 0.1
      outside the object mask — the true translucent alpha against the fitted one) and ``alpha_mae_empty`` (where
      the layer is empty, :func:`empty_region`);
    - ``false_opacity`` and ``mean_false_alpha`` (:func:`false_opacity`): alpha where the layer should be empty;
    - ``effect_recall`` (see :func:`effect_recall`; ``nan`` if the effect has no pixel outside the object in this
      clip), ``object_recall`` (share of the object mask with alpha > 0.5), ``cross_talk`` (:func:`cross_talk`) and
      ``effect_type``.

    Composite PSNR alone proves nothing about alpha: a colour free to follow alpha reproduces the solo video at any
    opacity above the least one. Read it with the alpha errors and the false opacity.
    """
    expected_rgb = tuple(scene.layer_rgb.shape)
    expected_alpha = tuple(scene.layer_alpha.shape)
    if tuple(rgb.shape) != expected_rgb:
        raise ValueError(f"rgb must have shape [N,T,3,H,W] = {expected_rgb} like the scene, got {tuple(rgb.shape)}")
    if tuple(alpha.shape) != expected_alpha:
        raise ValueError(f"alpha must have shape [N,T,1,H,W] = {expected_alpha} like the scene, "
                         f"got {tuple(alpha.shape)}")
    device = rgb.device
    background = scene.true_background.to(device)
    leaks = cross_talk(alpha.to(device), scene)
    results = []
    for index in range(expected_rgb[0]):
        layer_alpha = alpha[index].to(device)
        true_alpha = scene.layer_alpha[index].to(device)
        inside = scene.masks[index].to(device) > 0.5
        effect = (scene.effect_alpha[index].to(device) > 0.1) & ~inside
        recomposed = layer_alpha * rgb[index].to(device) + (1 - layer_alpha) * background
        share, mean_false = false_opacity(layer_alpha, true_alpha)
        results.append({
            "composite_psnr": psnr(recomposed, scene.true_solos[index]),
            "alpha_mae": alpha_mae(layer_alpha, true_alpha),
            "alpha_mae_object": masked_alpha_error(layer_alpha, true_alpha, inside),
            "effect_alpha_error": masked_alpha_error(layer_alpha, true_alpha, effect),
            "alpha_mae_empty": masked_alpha_error(layer_alpha, true_alpha, empty_region(true_alpha)),
            "false_opacity": share,
            "mean_false_alpha": mean_false,
            "effect_recall": effect_recall(layer_alpha, scene.effect_alpha[index], scene.masks[index]),
            "object_recall": object_recall(layer_alpha, scene.masks[index]),
            "cross_talk": leaks[index],
            "effect_type": scene.effect_types[index],
        })
    return results
