"""Working with fitted layers: depth order, compositing (with detail transfer) and edits."""
from __future__ import annotations

from ..omnimatte_core import compositing, editing, ordering
from .tensors import image_to_video, video_to_image

CATEGORY = "Generative Omnimatte/Layers"


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
                   "node's output): per frame, each object's median depth inside its mask decides who is in front. "
                   "Without depth, the object reaching lower in the frame counts as nearer; a typed order wins over "
                   "both.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("OMNIMATTE_LAYERS", "STRING")
    RETURN_NAMES = ("layers", "order")
    OUTPUT_TOOLTIPS = ("The same layers with the new order.", "The order of the first frame, front to back.")
    FUNCTION = "order"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "layers": ("OMNIMATTE_LAYERS", {"tooltip": "Layers from Fit Omnimatte Layers (they carry their object "
                                                       "masks)."}),
            "depth_convention": (["larger is nearer", "larger is farther"], {
                "default": "larger is nearer",
                "tooltip": "Depth Anything / MiDaS-style disparity maps are brighter when nearer; metric depth (and "
                           "Demo Scene's depth) is larger when farther."}),
            "smooth_frames": ("INT", {"default": 1, "min": 1, "max": 99,
                                      "tooltip": "Running median of each object's depth over this many frames "
                                                 "(1 = off); steadies flickering depth estimates."}),
            "hysteresis": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                     "tooltip": "Share of the clip's depth range by which the order must be wrong "
                                                "before it flips (0 = off; ~0.02 for noisy estimators)."}),
            "manual_order": ("STRING", {"default": "", "tooltip": "Optional fixed order for every frame, front to "
                                                                  "back, e.g. '1,0,2'; overrides depth when set."}),
        }, "optional": {
            "depth": ("IMAGE", {"tooltip": "A depth video with the layers' frames and size (grey; the first channel "
                                           "is read)."}),
        }}

    def order(self, layers, depth_convention, smooth_frames, hysteresis, manual_order, depth=None):
        masks = layers.masks if layers.masks is not None else (layers.alpha > 0.5).float()
        depth_video = None if depth is None else _video_like(depth, layers, "depth")[:, :1]
        order = ordering.order_layers(masks.cpu(), None if depth_video is None else depth_video.cpu(),
                                      manual=manual_order or None,
                                      bright_is_near=depth_convention == "larger is nearer",
                                      smooth_frames=int(smooth_frames), hysteresis=float(hysteresis))
        result = layers.replace(order=order)
        first = ", ".join(result.names[int(i)] for i in result.order[0])
        return (result, first)


class GenOmnimatteCompositeLayers:
    DESCRIPTION = ("Composite the layers back to front over their background (or a new one), in each frame's depth "
                   "order. Detail transfer puts the input's own pixels back wherever one layer alone makes a pixel "
                   "(composited opacity reaches 1), so the result keeps the input's fine detail.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK", "OMNIMATTE_LAYERS")
    RETURN_NAMES = ("composite", "opacity", "layers")
    OUTPUT_TOOLTIPS = ("[frames,H,W,3].", "Composited opacity of all layers (1 = opaque).",
                       "The layers after detail transfer (the input layers when it is off).")
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "layers": ("OMNIMATTE_LAYERS", {"tooltip": "The layers (ordered by Order Layers by Depth, or as fitted)."}),
            "detail_transfer": ("BOOLEAN", {"default": True, "tooltip": "Use the input video's pixels where one "
                                                                        "layer owns the pixel (needs 'video')."}),
            "threshold": ("FLOAT", {"default": compositing.DETAIL_THRESHOLD, "min": 0.51, "max": 1.0, "step": 0.01,
                                    "tooltip": "Composited opacity from which a layer owns a pixel for detail "
                                               "transfer (1.0 = the paper's 'reaches 1')."}),
        }, "optional": {
            "video": ("IMAGE", {"tooltip": "The original input video, for detail transfer."}),
            "new_background": ("IMAGE", {"tooltip": "Composite over this instead of the clean background (a video "
                                                    "with the same frames and size, or one still image)."}),
        }}

    def composite(self, layers, detail_transfer, threshold, video=None, new_background=None):
        if detail_transfer and video is None:
            raise ValueError("detail_transfer needs the original video: connect 'video' or turn detail_transfer off")
        if detail_transfer:
            # Into the background only when it is the fitted one: a new background must not get the old one's pixels.
            layers = compositing.detail_transfer(layers, _video_like(video, layers, "video"),
                                                 threshold=float(threshold),
                                                 into_background=new_background is None).layers
        shown = layers
        if new_background is not None:
            shown = layers.replace(background=_video_like(new_background, layers, "new_background"))
        frames = compositing.reconstruct(shown)
        _, transmission = compositing.composited_opacity(shown.alpha, shown.order)
        return (video_to_image(frames), (1 - transmission)[:, 0].float().cpu().contiguous(), layers)


class GenOmnimatteEditLayers:
    DESCRIPTION = ("Edit layers before compositing: put them over a new background, drop layers (the object and its "
                   "effects vanish), set a front-to-back order, retime one layer (shift, speed) and fade it. Applied "
                   "in that order.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("OMNIMATTE_LAYERS",)
    RETURN_NAMES = ("layers",)
    OUTPUT_TOOLTIPS = ("The edited layers.",)
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "layers": ("OMNIMATTE_LAYERS", {"tooltip": "The layers to edit."}),
            "drop_layers": ("STRING", {"default": "", "tooltip": "Layers to remove: indices (0 = first object) or "
                                                                 "names, comma separated; empty keeps all."}),
            "order": ("STRING", {"default": "", "tooltip": "Front-to-back order for every frame after dropping, "
                                                           "e.g. '1,0'; empty keeps the per-frame depth order."}),
            "layer": ("STRING", {"default": "0", "tooltip": "The layer to retime and fade (index after dropping, "
                                                            "or name)."}),
            "shift_frames": ("FLOAT", {"default": 0.0, "min": -10000.0, "max": 10000.0, "step": 1.0,
                                       "tooltip": "Start that layer this many frames later (negative: earlier); "
                                                  "frames outside its clip are transparent."}),
            "speed": ("FLOAT", {"default": 1.0, "min": 0.05, "max": 20.0, "step": 0.05,
                                "tooltip": "Playback speed of that layer (0.5 = slow motion)."}),
            "fade_in": ("INT", {"default": 0, "min": 0, "max": 10000,
                                "tooltip": "Frames over which that layer fades in from the first frame."}),
            "fade_out": ("INT", {"default": 0, "min": 0, "max": 10000,
                                 "tooltip": "Frames over which that layer fades out before the last frame."}),
            "opacity": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "Multiply that layer's alpha (0 hides it, 1 leaves it)."}),
        }, "optional": {
            "new_background": ("IMAGE", {"tooltip": "Replace the background: a video with at least the layers' frame "
                                                    "count, or one image (used for every frame); resized to fit."}),
            "background_fit": (["cover", "stretch"], {"default": "cover",
                                                      "tooltip": "cover: scale and centre-crop (keeps proportions); "
                                                                 "stretch: scale to the size exactly."}),
        }}

    def edit(self, layers, drop_layers, order, layer, shift_frames, speed, fade_in, fade_out, opacity,
             new_background=None, background_fit="cover"):
        if new_background is not None:
            layers = editing.with_background(layers, image_to_video(new_background, "new_background"),
                                             fit=background_fit)
        dropped = [_layer_ref(item) for item in drop_layers.split(",") if item.strip()]
        if dropped:
            layers = editing.drop_layers(layers, dropped)
        if order.strip():
            layers = editing.reorder_layers(layers, order)
        target = _layer_ref(layer)
        if shift_frames != 0 or speed != 1.0:
            layers = editing.retime_layer(layers, target, shift=float(shift_frames), speed=float(speed))
        if fade_in or fade_out or opacity != 1.0:
            layers = editing.fade_layer(layers, target, fade_in=int(fade_in), fade_out=int(fade_out),
                                        opacity=float(opacity))
        return (layers,)


def _layer_ref(text: str):
    """'2' → 2 (an index), anything else → a layer name."""
    text = str(text).strip()
    return int(text) if text.lstrip("-").isdigit() else text
