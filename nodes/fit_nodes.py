"""Fitting nodes: the weight-free clean plate, the base-resolution layer fit and the bootstrapped full-resolution fit.

ComfyUI runs every node under ``torch.inference_mode()``; optimisation needs autograd, so the fits run inside
``torch.inference_mode(False)`` + ``torch.enable_grad()`` on cloned inputs (inference tensors cannot be saved for
backward).
"""
from __future__ import annotations

import torch

from ..omnimatte_core.clean_plate import SOLO_DILATION
from ..omnimatte_core.effect_aware import PLATE_ROUNDS, ROUND_FIT_PRESET, effect_aware_removal
from ..omnimatte_core.masks import MASK_DILATION
from ..omnimatte_core.presets import PRESETS as FIT_PRESETS, resolve_config
from ..omnimatte_core.upsample import base_size
from . import comfy_integration as comfy
from .tensors import image_to_video, object_masks, split_objects, stack_to_image, video_to_image

CATEGORY = "Generative Omnimatte/Layers"
# The presets from the quickest to the slowest, as the dropdowns list them.
PRESETS = tuple(sorted(FIT_PRESETS, key=lambda name: FIT_PRESETS[name].base.steps))


def _fit_inputs(solo_videos, clean_background, masks):
    """IMAGE/MASK inputs → ``solos [N,T,3,H,W]``, ``background [T,3,H,W]``, ``masks [N,T,1,H,W]``, checked together."""
    background = image_to_video(clean_background, "clean_background")
    t, _, h, w = background.shape
    solos = split_objects(image_to_video(solo_videos, "solo_videos"), t, "solo_videos")
    if tuple(solos.shape[-2:]) != (h, w):
        raise ValueError(f"solo_videos are {solos.shape[-1]}×{solos.shape[-2]} but clean_background is {w}×{h}; "
                         "both must come from the same removal")
    stack = object_masks(masks, t, (h, w), "object_masks")
    if stack.shape[0] != solos.shape[0]:
        raise ValueError(f"object_masks hold {stack.shape[0]} objects but solo_videos hold {solos.shape[0]}; "
                         "give one mask per solo video, in the same order")
    return solos, background, stack


def _names(layer_names: str, n: int) -> list[str] | None:
    names = [s.strip() for s in (layer_names or "").split(",") if s.strip()]
    if not names:
        return None
    if len(names) != n:
        raise ValueError(f"layer_names lists {len(names)} names but there are {n} objects; give one name per object "
                         "or leave it empty")
    return names


# The node's live preview is refreshed at least this often (as a share of the steps), whatever the preset says.
PREVIEW_SHARE = 10


def _steps_and_preview_every(preset: str, stage: str, steps: int) -> tuple[int, int]:
    """The steps the fit will run (0 = the preset's) and the ``preview_every`` that refreshes the node's preview at
    least every 10 % of them (the preset's own interval when that is shorter)."""
    config = resolve_config(preset, stage, steps or None)
    every = max(1, config.steps // PREVIEW_SHARE)
    if config.preview_every:
        every = min(every, config.preview_every)
    return config.steps, every


def _steps_tooltip(stage: str) -> str:
    return (f"Optimiser steps of the {stage} fit; 0 = the preset's. A few hundred converge on short clips; "
            "the paper uses 20 000.")


def _rounds_progress(progress, total: int):
    """One bar over every round's fit: ``fit_layers`` counts each fit from step 1 again, this keeps counting on."""
    done = {"offset": 0, "last": 0}

    def report(step, _total=None, _preview=None):
        if step <= done["last"]:  # the next round's fit started
            done["offset"] += done["last"]
        done["last"] = step
        progress(done["offset"] + step, total)

    return report


class GenOmnimatteCleanPlate:
    DESCRIPTION = ("Weight-free clean background for a locked-off (static camera) shot: every pixel from the frames "
                   "where no object covers it. Also gives one solo video per object (the other objects replaced by "
                   "the clean plate), so layers can be fitted without Casper. With plate_rounds ≥ 1 the layers are "
                   "fitted internally to find the other objects' shadows and reflections beyond their masks, which "
                   "then leave each solo and the plate. Use Casper for moving cameras and for exact solos.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("clean_background", "solo_videos")
    OUTPUT_TOOLTIPS = ("The background video (the same plate every frame).",
                       "One video per object, objects one after another (objects × frames).")
    FUNCTION = "clean_plate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "video": ("IMAGE", {"tooltip": "A locked-off shot (the camera does not move)."}),
            "object_masks": ("MASK", {"tooltip": "Object masks, 1 = object, object after object (objects × frames)."}),
            "dilate": ("INT", {"default": MASK_DILATION, "min": 0, "max": 101,
                               "tooltip": "Grow the masks by this many pixels before taking background pixels, so "
                                          "soft edges and nearby shadows are avoided."}),
        }, "optional": {
            "solo_dilate": ("INT", {"default": SOLO_DILATION, "min": 0, "max": 201,
                                    "tooltip": "In each solo video, the other objects are replaced by the plate "
                                               "inside their masks grown by this many pixels (takes their soft "
                                               "edges and contact shadows too)."}),
            "allow_camera_motion": ("BOOLEAN", {"default": False,
                                                "tooltip": "Build the plate even if the camera moves (it will be "
                                                           "blurred); off: a moving camera stops with an error "
                                                           "suggesting Casper."}),
            "plate_rounds": ("INT", {"default": PLATE_ROUNDS, "min": 0, "max": 3,
                                     "tooltip": "Plate ↔ layers rounds: fit the layers, then take out of each solo "
                                                "video the other objects' shadows and reflections that reach beyond "
                                                "their grown masks (the part that moves with them), and rebuild the "
                                                "plate without the frames the layers claim. Each round costs one "
                                                "more layer fit (the preview preset). 0 = the plain temporal-median "
                                                "plate, no fit."}),
            "plate_fit_steps": ("INT", {"default": 0, "min": 0, "max": 100000,
                                        "tooltip": "Optimiser steps of each round's internal layer fit; 0 = the "
                                                   "preview preset's (as the main command)."}),
        }}

    def clean_plate(self, video, object_masks, dilate, solo_dilate=SOLO_DILATION, allow_camera_motion=False,
                    plate_rounds=PLATE_ROUNDS, plate_fit_steps=0):
        frames = image_to_video(video, "video")
        masks = _masks_for(object_masks, frames)
        rounds = int(plate_rounds)
        steps = resolve_config(ROUND_FIT_PRESET, "base", int(plate_fit_steps) or None).steps
        # The main command's choices for the rounds' fits: the quick preset, seed 0, at the base size. One bar over
        # all rounds (it also stops the fit on an interrupt). No live preview: these layers only serve the plate, and
        # the node keeps no room for a picture on the canvas.
        fit_kwargs = dict(preset=ROUND_FIT_PRESET, steps=steps, seed=0, device=comfy.torch_device(), preview_every=0)
        if rounds:
            fit_kwargs["progress"] = _rounds_progress(comfy.Progress(rounds * steps), rounds * steps)
            comfy.free_memory()
        with torch.inference_mode(False), torch.enable_grad():
            removal = effect_aware_removal(
                frames.clone(), masks.clone(), rounds=rounds, plate_dilate=int(dilate), solo_dilate=int(solo_dilate),
                allow_camera_motion=bool(allow_camera_motion), fit_size=base_size(tuple(frames.shape[-2:])),
                fit_kwargs=fit_kwargs)
        if rounds:
            comfy.free_memory()
        return (video_to_image(removal.background), stack_to_image(removal.solos))


def _masks_for(mask, frames: torch.Tensor) -> torch.Tensor:
    return object_masks(mask, frames.shape[0], tuple(frames.shape[-2:]), "object_masks")


class GenOmnimatteFitLayers:
    DESCRIPTION = ("Fit one RGBA layer per object — the object with its shadow, reflection or dust — from its solo "
                   "video, the clean background and its mask (all objects in one optimisation). Shows a live "
                   "preview of the first layer while fitting.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("OMNIMATTE_LAYERS",)
    RETURN_NAMES = ("layers",)
    OUTPUT_TOOLTIPS = ("The layers with their background, masks, order and fps.",)
    FUNCTION = "fit"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "solo_videos": ("IMAGE", {"tooltip": "Per object, the video with only that object (Casper Remove or "
                                                 "Clean Plate), objects one after another."}),
            "clean_background": ("IMAGE", {"tooltip": "The video with every object removed."}),
            "object_masks": ("MASK", {"tooltip": "Object masks, 1 = object (object only; the fit finds the effects), "
                                                 "in the same object order as solo_videos."}),
            "preset": (list(PRESETS), {"default": "default",
                                       "tooltip": "preview: a quick look; default: converges in a few hundred steps; "
                                                  "paper: the paper's 20 000 steps."}),
            "steps": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": _steps_tooltip("base")}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1,
                             "tooltip": "Seeds network initialisation and frame sampling (same seed, same layers on "
                                        "the CPU)."}),
            "fps": ("FLOAT", {"default": 24.0, "min": 0.01, "max": 1000.0, "step": 0.01,
                              "tooltip": "Frame rate stored with the layers (for Save Layers); connect Get Video "
                                         "Components' fps."}),
        }, "optional": {
            "layer_names": ("STRING", {"default": "", "tooltip": "Comma-separated names, one per object (file names "
                                                                 "of Save Layers); empty = layer_0, layer_1, …"}),
        }}

    def fit(self, solo_videos, clean_background, object_masks, preset, steps, seed, fps, layer_names=""):
        from ..omnimatte_core.fit import fit_layers
        solos, background, masks = _fit_inputs(solo_videos, clean_background, object_masks)
        names = _names(layer_names, solos.shape[0])
        total, preview_every = _steps_and_preview_every(preset, "base", steps)
        comfy.free_memory()
        progress = comfy.Progress(total)
        with torch.inference_mode(False), torch.enable_grad():
            fitted = fit_layers(solos.clone(), background.clone(), masks.clone(), preset=preset, steps=steps or None,
                                seed=seed, device=comfy.torch_device(), progress=progress,
                                preview_every=preview_every)
        comfy.free_memory()
        return (fitted.to_layers(background, names=names, masks=masks, fps=float(fps)),)


class GenOmnimatteUpscaleLayers:
    DESCRIPTION = ("Full-resolution layers from a base-resolution fit (the paper's bootstrapped fit): the removal "
                   "outputs are upscaled to the input video's size, the input's own pixels put back where an object "
                   "alone is visible, and the layers refined there, supervised by the upscaled base alpha.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("OMNIMATTE_LAYERS",)
    RETURN_NAMES = ("layers",)
    OUTPUT_TOOLTIPS = ("Layers at the full resolution, over the upscaled background.",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "base_layers": ("OMNIMATTE_LAYERS", {"tooltip": "Fit Omnimatte Layers at the base resolution."}),
            "solo_videos": ("IMAGE", {"tooltip": "The base-resolution solo videos the base layers were fitted from."}),
            "video": ("IMAGE", {"tooltip": "The input video at full resolution (sets the output size)."}),
            "object_masks": ("MASK", {"tooltip": "Object masks at full resolution, 1 = object, same object order."}),
            "resampler": (["bicubic", "lanczos", "bilinear", "area"], {
                "default": "bicubic", "tooltip": "How the base-resolution background and solos are upscaled."}),
            "input_detail": ("BOOLEAN", {"default": True, "tooltip": "Use the input's full-resolution pixels inside "
                                                                     "each object's own mask."}),
            "preset": (list(PRESETS), {"default": "default", "tooltip": "Settings of the full-resolution stage."}),
            "steps": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": _steps_tooltip("full-resolution")}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip": "Seed of the refinement."}),
        }}

    def upscale(self, base_layers, solo_videos, video, object_masks, resampler, input_detail, preset, steps, seed):
        from ..omnimatte_core.upsample import upscale_and_refine
        video_hr = image_to_video(video, "video")
        t = video_hr.shape[0]
        if base_layers.num_frames != t:
            raise ValueError(f"base_layers have {base_layers.num_frames} frames but video has {t}; use the same clip")
        solos = split_objects(image_to_video(solo_videos, "solo_videos"), t, "solo_videos")
        if tuple(solos.shape[-2:]) != base_layers.size or solos.shape[0] != base_layers.num_layers:
            raise ValueError(f"solo_videos are {solos.shape[0]} objects at {tuple(solos.shape[-2:])} but base_layers "
                             f"are {base_layers.num_layers} at {base_layers.size}; connect the solos the base layers "
                             "were fitted from")
        masks = _masks_for(object_masks, video_hr)
        if masks.shape[0] != base_layers.num_layers:
            raise ValueError(f"object_masks hold {masks.shape[0]} objects but base_layers {base_layers.num_layers}")
        total, preview_every = _steps_and_preview_every(preset, "full_res", steps)
        comfy.free_memory()
        progress = comfy.Progress(total)
        with torch.inference_mode(False), torch.enable_grad():
            fitted, background_hr = upscale_and_refine(
                base_layers, solos.clone(), base_layers.background.float().cpu().clone(), video_hr.clone(), masks.clone(),
                resampler=resampler, input_detail=input_detail, preset=preset, steps=steps or None, seed=seed,
                device=comfy.torch_device(), progress=progress, preview_every=preview_every)
        comfy.free_memory()
        return (base_layers.replace(rgb=fitted.rgb, alpha=fitted.alpha, background=background_hr.float().cpu(),
                                    masks=masks),)
