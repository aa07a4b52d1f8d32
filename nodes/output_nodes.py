"""Getting layers out: as ComfyUI IMAGE + MASK for any other node, as a checkerboard preview, or saved to disk."""
from __future__ import annotations

import torch

from ..omnimatte_core.export import checkerboard
from . import comfy_integration as comfy

# Grey levels of the node's checkerboard (lighter than the exported previews' 0.4 / 0.6, as the node always drew it).
PREVIEW_SHADES = (0.6, 0.85)

CATEGORY = "Generative Omnimatte/Output"
ALPHA_VIDEO_CHOICES = ("webm", "prores", "webm + prores", "none")


def _pick(layers, layer_index: int) -> list[int]:
    if layer_index >= layers.num_layers:
        raise ValueError(f"layer_index {layer_index} but the layers hold {layers.num_layers} layers "
                         f"(0..{layers.num_layers - 1}); use -1 for all")
    return list(range(layers.num_layers)) if layer_index < 0 else [layer_index]


class GenOmnimatteLayersToImage:
    DESCRIPTION = ("Layers as ComfyUI images so any node can use them: RGBA IMAGE [frames,H,W,4] (core Save Image "
                   "writes RGBA PNGs) and the alpha as MASK with 1 = opaque (feeds core ImageCompositeMasked "
                   "directly). Core 'Join Image with Alpha' expects the inverted, Load-Image-style mask: put core "
                   "'InvertMask' in between. With layer_index -1 all layers come one after another.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE", "IMAGE")
    RETURN_NAMES = ("rgba", "alpha", "rgb", "background")
    OUTPUT_TOOLTIPS = (
        "Straight (not premultiplied) RGBA, [frames,H,W,4].",
        "Opacity, 1 = opaque (the opposite of Load Image's mask; invert it for 'Join Image with Alpha').",
        "The layer colour without alpha, [frames,H,W,3].",
        "The clean background, [frames,H,W,3].",
    )
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "layers": ("OMNIMATTE_LAYERS", {"tooltip": "Layers from Fit Omnimatte Layers (or any node after it)."}),
            "layer_index": ("INT", {"default": -1, "min": -1, "max": 63,
                                    "tooltip": "Which layer (0 = first object); -1 = every layer, one after "
                                               "another (layers × frames)."}),
        }}

    def convert(self, layers, layer_index):
        index = _pick(layers, layer_index)
        rgb = layers.rgb[index].flatten(0, 1).float().cpu()  # [K·T,3,H,W]
        alpha = layers.alpha[index].flatten(0, 1).float().cpu()
        rgba = torch.cat([rgb, alpha], 1).permute(0, 2, 3, 1).contiguous()
        background = layers.background.float().cpu().permute(0, 2, 3, 1).contiguous()
        return (rgba, alpha[:, 0].contiguous(), rgba[..., :3].contiguous(), background)


class GenOmnimattePreviewLayers:
    DESCRIPTION = ("Every layer over a checkerboard, side by side with the background, one image per frame — connect "
                   "core 'Preview Image' or 'Create Video' to look at the decomposition.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("preview",)
    OUTPUT_TOOLTIPS = ("[frames, H, (layers+1)·W, 3]: background, then each layer in layer order.",)
    FUNCTION = "preview"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "layers": ("OMNIMATTE_LAYERS", {"tooltip": "The layers to look at."}),
            "square": ("INT", {"default": 16, "min": 2, "max": 256,
                               "tooltip": "Checkerboard square size in pixels."}),
            "include_background": ("BOOLEAN", {"default": True, "tooltip": "Show the background as the first tile."}),
        }}

    def preview(self, layers, square, include_background):
        rgb, alpha = layers.rgb.float().cpu(), layers.alpha.float().cpu()
        h, w = layers.size
        board = checkerboard(h, w, square, PREVIEW_SHADES)
        tiles = [alpha[i] * rgb[i] + (1 - alpha[i]) * board for i in range(layers.num_layers)]  # [T,3,H,W] each
        if include_background:
            tiles.insert(0, layers.background.float().cpu())
        return (torch.cat(tiles, dim=-1).permute(0, 2, 3, 1).contiguous().clamp(0, 1),)


class GenOmnimatteSaveLayers:
    DESCRIPTION = ("Save the layers into ComfyUI's output folder as a new run folder <prefix>_NNNN (never "
                   "overwriting): an RGBA PNG sequence per layer, alpha videos (VP9 .webm, ProRes 4444 .mov), "
                   "checkerboard previews, the background and manifest.json (names, per-frame order, fps).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("folder",)
    OUTPUT_TOOLTIPS = ("The run folder that was written.",)
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "layers": ("OMNIMATTE_LAYERS", {"tooltip": "The layers to save."}),
            "filename_prefix": ("STRING", {"default": "omnimatte",
                                           "tooltip": "Run folder name prefix (letters, digits, . _ -); the folder "
                                                      "gets the next free number."}),
            "png": ("BOOLEAN", {"default": True, "tooltip": "RGBA PNG sequence per layer (straight alpha)."}),
            "alpha_video": (list(ALPHA_VIDEO_CHOICES), {"default": "webm",
                                                        "tooltip": "Video with transparency: VP9 .webm (browsers), "
                                                                   "ProRes 4444 .mov (editors), both, or none."}),
            "previews": ("BOOLEAN", {"default": True, "tooltip": "Checkerboard preview mp4 per layer and the "
                                                                 "background as mp4."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix, png, alpha_video, previews):
        # Listing inputs here replaces ComfyUI's own checks of them, so the choice list is checked here too.
        import re
        if alpha_video not in ALPHA_VIDEO_CHOICES:
            return f"alpha_video must be one of {list(ALPHA_VIDEO_CHOICES)}, got {alpha_video!r}"
        if isinstance(filename_prefix, str) and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}", filename_prefix):
            return (f"filename_prefix {filename_prefix!r}: use 1-100 letters, digits, '.', '_' or '-' (no folders, "
                    "not starting with '.' or '-')")
        if png is False and alpha_video == "none" and previews is False:
            return "Save Layers: choose at least one of png, alpha_video, previews"
        return True

    def save(self, layers, filename_prefix, png, alpha_video, previews):
        from ..omnimatte_core.export import available_formats, export_layers
        formats = (["png"] if png else []) + {"webm": ["webm"], "prores": ["prores"],
                                              "webm + prores": ["webm", "prores"], "none": []}[alpha_video]
        available = available_formats()
        missing = [f for f in formats if not available.get(f)]
        if missing:
            raise RuntimeError(f"this ComfyUI's PyAV/FFmpeg cannot write {missing}; choose another alpha_video "
                               "(or install a PyAV build with libvpx/prores)")
        if previews and available.get("preview"):
            formats.append("preview")
        out = comfy.output_dir()
        progress = comfy.Progress(1)
        result = export_layers(layers, out, prefix=filename_prefix, formats=formats, progress=progress.simple,
                               settings={"node": "GenOmnimatteSaveLayers", "formats": formats})
        # Show the first frame of every layer (RGBA PNGs in the output folder) on the node.
        images = []
        for path in result.files.get("png", []):
            if path.endswith("_00000.png") and path.startswith("layers/"):
                full = result.folder / path
                images.append({"filename": full.name, "subfolder": str(full.parent.relative_to(out)),
                               "type": "output"})
        return {"ui": {"images": images, "text": [str(result.folder)]}, "result": (str(result.folder),)}
