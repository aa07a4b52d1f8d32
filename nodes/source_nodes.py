"""Where videos and object masks come from: a synthetic demo scene, several MASK inputs, or a label-map video.

Object masks travel as one MASK batch, object after object (``N·T`` frames, see ``tensors.py``), so a segmenter's
single MASK is already a one-object batch and nothing but core types is needed between nodes.
"""
from __future__ import annotations

import torch

from ..omnimatte_core.demo_scene import DEMO_SCENE
from .tensors import mask_to_video, stack_to_mask, video_to_image

CATEGORY = "Generative Omnimatte/Inputs"
MAX_MASK_INPUTS = 4


class GenOmnimatteDemoScene:
    DESCRIPTION = ("A synthetic video with moving objects and their effects (a cast shadow, a reflection in water, a "
                   "dust trail), its object masks, a depth video and the true clean background: run every "
                   "weight-free node with no input files.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE", "FLOAT", "IMAGE")
    RETURN_NAMES = ("video", "object_masks", "depth", "fps", "true_background")
    OUTPUT_TOOLTIPS = ("The composite video [frames,H,W,3].",
                       "Object masks (object only, no effects), object after object: objects × frames.",
                       "Depth video, grey, larger = farther (set Order Layers by Depth to 'larger is farther').",
                       "Frame rate (24).",
                       "The exact clean background, for comparison.")
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1,
                             "tooltip": "Fixes photos, shapes, paths and depths: same seed, same scene."}),
            "num_objects": ("INT", {"default": DEMO_SCENE["num_objects"], "min": 1, "max": 3,
                                    "tooltip": "1: with a shadow; 2: + one with a reflection; 3: + one with dust."}),
            "frames": ("INT", {"default": DEMO_SCENE["frames"], "min": 1, "max": 200, "tooltip": "Number of frames."}),
            "width": ("INT", {"default": DEMO_SCENE["width"], "min": 16, "max": 2048, "step": 8,
                              "tooltip": "Frame width in pixels."}),
            "height": ("INT", {"default": DEMO_SCENE["height"], "min": 16, "max": 2048, "step": 8,
                               "tooltip": "Frame height in pixels."}),
            "camera": (["static", "pan"], {"default": "static",
                                           "tooltip": "static: a locked-off shot (Clean Plate works); pan: the view "
                                                      "slides sideways (needs Casper for the background)."}),
        }}

    def generate(self, seed, num_objects, frames, width, height, camera):
        from ..omnimatte_core.synthetic import make_scene
        scene = make_scene(seed=seed, num_objects=num_objects, frames=frames, height=height, width=width,
                           camera=camera)
        depth = scene.depth / scene.depth.max().clamp_min(1e-6)
        return (video_to_image(scene.composite), stack_to_mask(scene.masks), video_to_image(depth.expand(-1, 3, -1, -1)),
                24.0, video_to_image(scene.background))


class GenOmnimatteCombineObjectMasks:
    DESCRIPTION = ("Put the masks of up to four objects (each a MASK over all frames, 1 = object, as segmenters give) "
                   "into one object-masks batch for Build Trimasks, Clean Plate and Fit Omnimatte Layers. Chain two "
                   "of these for more objects.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MASK", "INT")
    RETURN_NAMES = ("object_masks", "num_objects")
    OUTPUT_TOOLTIPS = ("Objects one after another (objects × frames).", "How many objects.")
    FUNCTION = "combine"

    @classmethod
    def INPUT_TYPES(cls):
        tip = ("Object {i}: a MASK with one frame per video frame, 1 = object. A batch of several objects "
               "(from another Combine Object Masks) is kept whole.")
        return {
            "required": {"frames": ("INT", {"default": 0, "min": 0, "max": 100000,
                                            "tooltip": "Video frame count, to check every mask and split batches "
                                                       "of several objects; 0 = take each input as one object."})},
            "optional": {f"mask_{i}": ("MASK", {"tooltip": tip.format(i=i)}) for i in range(1, MAX_MASK_INPUTS + 1)},
        }

    def combine(self, frames, **masks):
        given = [(name, mask_to_video(masks[name], name)) for name in sorted(masks) if masks[name] is not None]
        if not given:
            raise ValueError("Combine Object Masks: no masks connected; connect at least mask_1 (one MASK per object)")
        size = given[0][1].shape[-2:]
        for name, m in given:
            if m.shape[-2:] != size:
                raise ValueError(f"{name} is {m.shape[-1]}×{m.shape[-2]} (W×H) but {given[0][0]} is "
                                 f"{size[1]}×{size[0]}; every object mask must have the video's size")
            if frames and m.shape[0] % frames:
                raise ValueError(f"{name} has {m.shape[0]} frames; expected {frames} (the video's frame count) "
                                 "per object")
            if not frames and m.shape[0] != given[0][1].shape[0]:
                raise ValueError(f"{name} has {m.shape[0]} frames but {given[0][0]} has {given[0][1].shape[0]}; "
                                 "every object needs a mask for every frame")
        combined = torch.cat([m for _, m in given])[:, 0]
        per_object = frames or given[0][1].shape[0]
        return (combined, combined.shape[0] // per_object)


class GenOmnimatteMasksFromLabelMap:
    DESCRIPTION = ("Split a label-map video — every object painted with its own value, 0 = background, as SAM2-style "
                   "video segmenters and hand-painted masks give — into one object mask each.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MASK", "INT", "STRING")
    RETURN_NAMES = ("object_masks", "num_objects", "label_values")
    OUTPUT_TOOLTIPS = ("Objects one after another (objects × frames), in the order of label_values.",
                       "How many objects.", "The 0..255 value of each object, comma separated.")
    FUNCTION = "split"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "label_map": ("IMAGE", {"tooltip": "The label video as an IMAGE (grey; the first channel is read). For a "
                                               "MASK, use core 'Convert Mask to Image' first."}),
            "values": ("STRING", {"default": "auto", "tooltip": "Object values on a 0..255 scale, comma separated "
                                                                "(e.g. '1,2,3' or '85,170,255'), in the order you "
                                                                "want the objects; 'auto' finds them (ascending)."}),
            "tolerance": ("INT", {"default": -1, "min": -1, "max": 127,
                                  "tooltip": "Values within this many levels still count. -1 = automatic: exact "
                                             "values for a lossless map (PNG), and for a lossy one (mp4, JPG) each "
                                             "pixel goes to the nearest label, codec noise near 0 to the "
                                             "background."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, values):
        if isinstance(values, str) and values.strip().lower() != "auto":
            try:
                parsed = [int(v) for v in values.split(",") if v.strip()]
            except ValueError:
                return f"values must be 'auto' or comma-separated integers 1..255, got {values!r}"
            if not parsed or any(not 1 <= v <= 255 for v in parsed):
                return f"values must be 'auto' or comma-separated integers 1..255, got {values!r}"
        return True

    def split(self, label_map, values, tolerance):
        from ..omnimatte_core.video_io import split_label_levels

        if label_map.ndim != 4:
            raise ValueError(f"label_map must be an IMAGE [frames, H, W, channels], got shape {tuple(label_map.shape)}")
        levels = torch.round(label_map[..., 0].float().clamp(0, 1) * 255).to(torch.uint8)  # [T,H,W]
        chosen = None if values.strip().lower() == "auto" else [int(v) for v in values.split(",") if v.strip()]
        split = split_label_levels(levels, chosen, tolerance=None if tolerance < 0 else tolerance)
        masks = split.masks.float()  # [N,T,H,W]
        return (masks.flatten(0, 1), len(split.values), ",".join(str(v) for v in split.values))
