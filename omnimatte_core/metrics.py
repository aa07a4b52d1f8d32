"""Quality measures for fitted layers against a synthetic scene's ground truth (pure torch).

Conventions: images and alphas are float in 0..1, videos ``[T,C,H,W]``, layer stacks ``[N,T,C,H,W]``.
Every function returns a Python float; inputs may live on any device.
"""
from __future__ import annotations

import math

import torch

__all__ = ["psnr", "alpha_mae", "effect_recall", "object_recall", "layer_quality"]


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


def layer_quality(rgb: torch.Tensor, alpha: torch.Tensor, scene) -> list[dict]:
    """Score fitted layers ``rgb [N,T,3,H,W]`` (straight colour), ``alpha [N,T,1,H,W]`` against a
    :class:`~omnimatte_core.synthetic.SyntheticScene`.

    Per object: ``composite_psnr`` (dB) of ``alpha*rgb + (1-alpha)*background`` against the scene's solo video,
    ``alpha_mae`` against ``scene.layer_alpha`` (object + effect), ``effect_recall`` (see :func:`effect_recall`;
    ``nan`` if the effect has no pixel outside the object in this clip), ``object_recall`` (share of the object mask
    with alpha > 0.5) and ``effect_type``.
    """
    expected_rgb = tuple(scene.layer_rgb.shape)
    expected_alpha = tuple(scene.layer_alpha.shape)
    if tuple(rgb.shape) != expected_rgb:
        raise ValueError(f"rgb must have shape [N,T,3,H,W] = {expected_rgb} like the scene, got {tuple(rgb.shape)}")
    if tuple(alpha.shape) != expected_alpha:
        raise ValueError(f"alpha must have shape [N,T,1,H,W] = {expected_alpha} like the scene, "
                         f"got {tuple(alpha.shape)}")
    device = rgb.device
    background = scene.background.to(device)
    results = []
    for index in range(expected_rgb[0]):
        layer_alpha = alpha[index].to(device)
        recomposed = layer_alpha * rgb[index] + (1 - layer_alpha) * background
        results.append({
            "composite_psnr": psnr(recomposed, scene.solos[index]),
            "alpha_mae": alpha_mae(layer_alpha, scene.layer_alpha[index]),
            "effect_recall": effect_recall(layer_alpha, scene.effect_alpha[index], scene.masks[index]),
            "object_recall": object_recall(layer_alpha, scene.masks[index]),
            "effect_type": scene.effect_types[index],
        })
    return results
