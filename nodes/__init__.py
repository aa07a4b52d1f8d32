"""ComfyUI node classes of the pack (thin declarations; the work lives in the core libraries).

Every node type name starts with ``GenOmnimatte`` and never changes once shipped (saved workflows refer to it);
display names may change. Only torch is imported here: diffusers/transformers load when a node that needs them runs.
"""
from . import comfy_integration
from .casper_nodes import GenOmnimatteBuildTrimasks, GenOmnimatteCasperRemove, GenOmnimatteLoadCasperModel
from .fit_nodes import GenOmnimatteCleanPlate, GenOmnimatteFitLayers, GenOmnimatteUpscaleLayers
from .layer_nodes import GenOmnimatteCompositeLayers, GenOmnimatteEditLayers, GenOmnimatteOrderLayersByDepth
from .output_nodes import GenOmnimatteLayersToImage, GenOmnimattePreviewLayers, GenOmnimatteSaveLayers
from .source_nodes import GenOmnimatteCombineObjectMasks, GenOmnimatteDemoScene, GenOmnimatteMasksFromLabelMap

comfy_integration.register_model_folders()

_DISPLAY_NAMES = {
    GenOmnimatteDemoScene: "Demo Scene (synthetic video + masks)",
    GenOmnimatteCombineObjectMasks: "Combine Object Masks",
    GenOmnimatteMasksFromLabelMap: "Masks from Label Map",
    GenOmnimatteLoadCasperModel: "Load Casper Model",
    GenOmnimatteBuildTrimasks: "Build Trimasks",
    GenOmnimatteCasperRemove: "Casper Remove (objects + effects)",
    GenOmnimatteCleanPlate: "Clean Plate (locked-off shot)",
    GenOmnimatteFitLayers: "Fit Omnimatte Layers",
    GenOmnimatteUpscaleLayers: "Upscale Layers to Full Resolution",
    GenOmnimatteOrderLayersByDepth: "Order Layers by Depth",
    GenOmnimatteCompositeLayers: "Composite Layers",
    GenOmnimatteEditLayers: "Edit Layers",
    GenOmnimatteLayersToImage: "Layers → IMAGE + MASK",
    GenOmnimattePreviewLayers: "Preview Layers (checkerboard)",
    GenOmnimatteSaveLayers: "Save Layers",
}

NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in _DISPLAY_NAMES}
NODE_DISPLAY_NAME_MAPPINGS = {cls.__name__: name for cls, name in _DISPLAY_NAMES.items()}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
