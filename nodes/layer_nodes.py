"""Working with fitted layers: depth order, compositing (with detail transfer) and edits."""
from __future__ import annotations

from . import comfy_integration as comfy
from .tensors import image_to_video, video_to_image

CATEGORY = "Generative Omnimatte/Layers"


def _core(name: str):
    """``omnimatte_core.<name>``, imported when the node runs (a missing one disables only this node)."""
    import importlib
    try:
        return importlib.import_module(f"..omnimatte_core.{name}", __package__)
    except ModuleNotFoundError as error:
        raise comfy.MissingDependency(f"omnimatte_core.{name} is missing from this copy of the pack ({error}); "
                                      "update the pack") from error


def _video_like(image, layers, name: str):
    video = image_to_video(image, name)
    if video.shape[0] == 1 and layers.num_frames > 1:  # one still image: the same every frame
        video = video.expand(layers.num_frames, -1, -1, -1)
    if video.shape[0] != layers.num_frames or tuple(video.shape[-2:]) != layers.size:
        raise ValueError(f"{name} is {video.shape[0]} frames of {video.shape[-1]}×{video.shape[-2]} but the layers are "
                         f"{layers.num_frames} frames of {layers.size[1]}×{layers.size[0]}; resize/trim it to match "
                         "(one still image is repeated)")
    return video.contiguous()


class GenOmnimatteOrderLayersByDepth:
    DESCRIPTION = ("Set the per-frame front-to-back order of the layers from a depth video (e.g. a Depth Anything "
                   "node's output): per frame, each object's depth inside its mask decides who is in front.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("OMNIMATTE_LAYERS", "STRING")
    RETURN_NAMES = ("layers", "order")
    OUTPUT_TOOLTIPS = ("The same layers with the new order.", "The order of the first frame, front to back.")
    FUNCTION = "order"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "layers": ("OMNIMATTE_LAYERS", {"tooltip": "Layers from Fit Omnimatte Layers."}),
            "depth": ("IMAGE", {"tooltip": "A depth video with the layers' frames and size (grey; the first channel "
                                           "is read)."}),
            "depth_convention": (["larger is nearer", "larger is farther"], {
                "default": "larger is nearer",
                "tooltip": "Depth Anything / MiDaS / ZoeDepth-style disparity maps are brighter when nearer; metric "
                           "depth (and Demo Scene's depth) is larger when farther."}),
        }}

    def order(self, layers, depth, depth_convention):
        ordering = _core("ordering")
        depth_video = _video_like(depth, layers, "depth")[:, :1]
        if depth_convention == "larger is nearer":
            depth_video = 1.0 - depth_video
        order = ordering.order_by_depth(layers, depth_video)
        result = layers.replace(order=order)
        first = ", ".join(result.names[int(i)] for i in result.order[0])
        return (result, first)


class GenOmnimatteCompositeLayers:
    DESCRIPTION = ("Composite the layers back to front over their background (or a new one), in each frame's depth "
                   "order. Detail transfer puts back the input's own pixels wherever the layers are fully opaque, "
                   "so the result keeps the input's fine detail.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("composite", "opacity")
    OUTPUT_TOOLTIPS = ("[frames,H,W,3].", "Composited opacity of all layers (1 = opaque).")
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "layers": ("OMNIMATTE_LAYERS", {"tooltip": "The layers (ordered by Order Layers by Depth, or as fitted)."}),
            "detail_transfer": ("BOOLEAN", {"default": True, "tooltip": "Use the input video's pixels where the "
                                                                        "layers are opaque (needs 'video')."}),
        }, "optional": {
            "video": ("IMAGE", {"tooltip": "The original input video, for detail transfer."}),
            "new_background": ("IMAGE", {"tooltip": "Composite over this instead of the clean background (a video "
                                                    "with the same frames and size, or one still image)."}),
        }}

    def composite(self, layers, detail_transfer, video=None, new_background=None):
        compositing = _core("compositing")
        if detail_transfer and video is None:
            raise ValueError("detail_transfer needs the original video: connect 'video' or turn detail_transfer off")
        if new_background is not None:
            layers = layers.replace(background=_video_like(new_background, layers, "new_background"))
        source = _video_like(video, layers, "video") if (detail_transfer and video is not None) else None
        frames, opacity = compositing.composite_layers(layers, video=source, detail_transfer=bool(detail_transfer))
        return (video_to_image(frames), opacity[:, 0].float().cpu())


class GenOmnimatteEditLayers:
    DESCRIPTION = ("Edit layers before compositing: drop or keep layers, change their order, shift a layer in time, "
                   "fade a layer's opacity, swap in a new background.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("OMNIMATTE_LAYERS",)
    RETURN_NAMES = ("layers",)
    OUTPUT_TOOLTIPS = ("The edited layers.",)
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "layers": ("OMNIMATTE_LAYERS", {"tooltip": "The layers to edit."}),
            "keep_layers": ("STRING", {"default": "all", "tooltip": "Comma-separated layer indices (0-based) or names "
                                                                    "to keep, in the front-to-back order you want; "
                                                                    "'all' keeps every layer."}),
            "fix_order": ("BOOLEAN", {"default": False, "tooltip": "Use the keep_layers order (front to back) in "
                                                                   "every frame instead of the depth order."}),
            "layer": ("INT", {"default": 0, "min": 0, "max": 63, "tooltip": "The layer that time_offset and "
                                                                            "opacity apply to (index after "
                                                                            "keep_layers)."}),
            "time_offset": ("INT", {"default": 0, "min": -10000, "max": 10000,
                                    "tooltip": "Shift that layer by this many frames (positive = later); frames "
                                               "shifted in are transparent."}),
            "opacity": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "Multiply that layer's alpha (0 hides it, 1 leaves it)."}),
        }, "optional": {
            "new_background": ("IMAGE", {"tooltip": "Replace the background (same frames and size, or one still "
                                                    "image)."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, keep_layers="all", **_):
        if isinstance(keep_layers, str) and not keep_layers.strip():
            return "keep_layers is empty: write 'all' or the layers to keep, e.g. '0,2'"
        return True

    def edit(self, layers, keep_layers, fix_order, layer, time_offset, opacity, new_background=None):
        editing = _core("editing")
        if new_background is not None:
            layers = layers.replace(background=_video_like(new_background, layers, "new_background"))
        if keep_layers.strip().lower() != "all":
            wanted = []
            for item in (s.strip() for s in keep_layers.split(",") if s.strip()):
                if item.lstrip("-").isdigit():
                    wanted.append(int(item))
                elif item in layers.names:
                    wanted.append(layers.names.index(item))
                else:
                    raise ValueError(f"keep_layers: {item!r} is neither a layer index (0..{layers.num_layers - 1}) "
                                     f"nor a layer name ({', '.join(layers.names)})")
            layers = editing.select_layers(layers, wanted)
            if fix_order:
                layers = editing.reorder_layers(layers, list(range(layers.num_layers)))
        if layer >= layers.num_layers:
            raise ValueError(f"layer {layer} but only {layers.num_layers} layers remain (0..{layers.num_layers - 1})")
        if time_offset:
            layers = editing.retime_layer(layers, layer, time_offset)
        if opacity != 1.0:
            layers = editing.fade_layer(layers, layer, opacity)
        return (layers,)
