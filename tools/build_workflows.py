"""Write the example workflows (ComfyUI UI format, version 0.4) from short graph descriptions.

Run from the repository root: ``python tools/build_workflows.py``; it writes ``workflows/*.json`` (the
folder ComfyUI's Templates browser lists, each file with a ``.jpg`` thumbnail of the same name:
``tools/render_thumbnails.py``). Node specs come from the pack itself (our
nodes) and from ``tests/nodes/fixtures/comfyui_core_nodes.json`` (core nodes, as a real server's /object_info gave
them), so every widget value lands in the slot the frontend expects. Nodes are placed in columns, left to right, and
each stage gets a group. The committed files were then loaded into the real frontend and saved from its canvas
(``tools/resave_from_frontend.py``), so they carry the frontend's own normalisation.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE_NODES = ROOT / "tests" / "nodes" / "fixtures" / "comfyui_core_nodes.json"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
COLUMN_WIDTH, NODE_WIDTH, GAP = 380, 330, 40
# The README's file names: the dropdown lists what lies in the user's models folder, these are what it should hold.
MODEL_FILES = {"base_model": "CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP",
               "casper_weights": "casper_cogvideox_fun_v1.5.safetensors"}
GROUP_COLOURS = ["#3f789e", "#8A8", "#b06634", "#a1309b", "#88A", "#b58b2a"]
# Nodes that show a picture or video on the canvas (live previews while they run, their images or video after):
# each gets this much room below its widgets, inside its own box, so the frontend has no need to grow it over the
# node below (it grows a node that is too small for its preview).
PREVIEW_NODES = {"GenOmnimatteCasperRemove", "GenOmnimatteFitLayers", "GenOmnimatteUpscaleLayers",
                 "GenOmnimatteSaveLayers", "PreviewImage", "SaveImage", "SaveVideo", "LoadImage", "LoadVideo"}
PREVIEW_ROOM = 256
# An image every ComfyUI install has (its input/ folder ships it): workflow (e) runs as shipped.
BUNDLED_IMAGE = "example.png"


def load_pack():
    spec = importlib.util.spec_from_file_location("generative_omnimatte_pack", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def node_specs() -> dict:
    """``{type: {"inputs": [(name, type, options)], "outputs": [(name, type)]}}`` for our nodes and the core ones."""
    specs = {}
    for name, cls in load_pack().NODE_CLASS_MAPPINGS.items():
        inputs = [(n, s[0], s[1] if len(s) > 1 else {}) for section in ("required", "optional")
                  for n, s in cls.INPUT_TYPES().get(section, {}).items()]
        names = getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)
        specs[name] = {"inputs": inputs, "outputs": list(zip(names, cls.RETURN_TYPES))}
    core = json.loads(CORE_NODES.read_text())["nodes"]
    for name, d in core.items():
        inputs = [(n, s[0], s[1] if len(s) > 1 else {}) for section in ("required", "optional")
                  for n, s in d["input"].get(section, {}).items()]
        specs[name] = {"inputs": inputs, "outputs": list(zip(d["output_name"], d["output"]))}
    return specs


def input_kind(type_) -> str:
    return "COMBO" if isinstance(type_, list) else type_


def is_widget(type_) -> bool:
    return input_kind(type_) in WIDGET_TYPES


class Graph:
    def __init__(self, specs: dict):
        self.specs, self.nodes, self.links, self.groups = specs, [], [], []

    def add(self, type_, column: int, row_y: float, title: str | None = None, **widgets) -> dict:
        spec = self.specs[type_]
        values = []
        for name, kind, options in spec["inputs"]:
            if not is_widget(kind):
                continue
            if name in widgets:
                value = widgets[name]
            elif "default" in options:
                value = options["default"]
            elif isinstance(kind, list):
                value = kind[0] if kind else ""
            else:
                value = (options.get("options") or [""])[0]
            values.append(value)
            if name in ("seed", "noise_seed") or options.get("control_after_generate"):
                values.append("fixed")
        unknown = set(widgets) - {n for n, k, _ in spec["inputs"] if is_widget(k)}
        if unknown:
            raise KeyError(f"{type_}: no widget(s) {sorted(unknown)}")
        link_inputs = [(n, input_kind(k)) for n, k, _ in spec["inputs"] if not is_widget(k)]
        height = 46 + 22 * max(len(link_inputs), len(spec["outputs"])) + 26 * len(values)
        if type_ in PREVIEW_NODES:
            height += PREVIEW_ROOM
        node = {
            "id": len(self.nodes) + 1, "type": type_, "pos": [40 + column * COLUMN_WIDTH, row_y],
            "size": [NODE_WIDTH, height], "flags": {}, "order": len(self.nodes), "mode": 0,
            "inputs": [{"name": n, "type": k, "link": None} for n, k in link_inputs],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                        for i, (n, t) in enumerate(spec["outputs"])],
            "properties": {"Node name for S&R": type_},
            "widgets_values": values,
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def connect(self, source: dict, output: str, target: dict, input_: str) -> None:
        out_slot = next(i for i, o in enumerate(source["outputs"]) if o["name"] == output)
        if not any(o["name"] == input_ for o in target["inputs"]):
            # A link into a widget (e.g. fps): the frontend shows it as an input socket tied to that widget.
            kind = next(input_kind(k) for n, k, _ in self.specs[target["type"]]["inputs"] if n == input_)
            target["inputs"].append({"name": input_, "type": kind, "widget": {"name": input_}, "link": None})
        in_slot = next(i for i, o in enumerate(target["inputs"]) if o["name"] == input_)
        type_ = source["outputs"][out_slot]["type"]
        link_id = len(self.links) + 1
        self.links.append([link_id, source["id"], out_slot, target["id"], in_slot, type_])
        source["outputs"][out_slot]["links"].append(link_id)
        target["inputs"][in_slot]["link"] = link_id

    def group(self, title: str, members: list[dict]) -> None:
        left = min(n["pos"][0] for n in members) - 20
        top = min(n["pos"][1] for n in members) - 60
        right = max(n["pos"][0] + n["size"][0] for n in members) + 20
        bottom = max(n["pos"][1] + n["size"][1] for n in members) + 20
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": [left, top, right - left,
                                                                                      bottom - top],
                            "color": GROUP_COLOURS[len(self.groups) % len(GROUP_COLOURS)], "font_size": 20,
                            "flags": {}})

    def below(self, node: dict) -> float:
        return node["pos"][1] + node["size"][1] + GAP + 40

    def to_json(self, name: str) -> dict:
        # Stable ids make regenerated files diff cleanly.
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"generative-omnimatte/{name}")),
            "revision": 0, "last_node_id": len(self.nodes), "last_link_id": len(self.links),
            "nodes": self.nodes, "links": self.links, "groups": self.groups, "config": {},
            "extra": {"ds": {"scale": 0.6, "offset": [0, 0]}, "frontendVersion": "1.27.10"},
            "version": 0.4,
        }


def video_input(g: Graph, column: int, y: float, file: str, title: str):
    load = g.add("LoadVideo", column, y, title=title, file=file)
    parts = g.add("GetVideoComponents", column, g.below(load))
    g.connect(load, "VIDEO", parts, "video")
    return load, parts


def weight_free(g: Graph):
    """(b) Demo Scene → Clean Plate → Fit → Order → Composite → Save Layers (+ previews, a composite video)."""
    demo = g.add("GenOmnimatteDemoScene", 0, 80)
    g.group("1. Synthetic shot", [demo])
    plate = g.add("GenOmnimatteCleanPlate", 1, 80)
    g.connect(demo, "video", plate, "video")
    g.connect(demo, "object_masks", plate, "object_masks")
    g.group("2. Clean plate", [plate])
    fit = g.add("GenOmnimatteFitLayers", 2, 80, preset="preview", layer_names="shadow_object,reflection_object")
    g.connect(plate, "solo_videos", fit, "solo_videos")
    g.connect(plate, "clean_background", fit, "clean_background")
    g.connect(demo, "object_masks", fit, "object_masks")
    g.connect(demo, "fps", fit, "fps")
    order = g.add("GenOmnimatteOrderLayersByDepth", 2, g.below(fit), depth_convention="larger is farther")
    g.connect(fit, "layers", order, "layers")
    g.connect(demo, "depth", order, "depth")
    g.group("3. Fit layers, order", [fit, order])
    composite = g.add("GenOmnimatteCompositeLayers", 3, 80)
    g.connect(order, "layers", composite, "layers")
    g.connect(demo, "video", composite, "video")
    video = g.add("CreateVideo", 3, g.below(composite), fps=24.0)
    g.connect(composite, "composite", video, "images")
    save_video = g.add("SaveVideo", 3, g.below(video), filename_prefix="video/omnimatte_recomposite")
    g.connect(video, "VIDEO", save_video, "video")
    g.group("4. Recomposite", [composite, video, save_video])
    save = g.add("GenOmnimatteSaveLayers", 4, 80, filename_prefix="omnimatte_demo")
    g.connect(order, "layers", save, "layers")
    preview = g.add("GenOmnimattePreviewLayers", 4, g.below(save))
    g.connect(order, "layers", preview, "layers")
    show = g.add("PreviewImage", 4, g.below(preview))
    g.connect(preview, "preview", show, "images")
    g.group("5. Save, look", [save, preview, show])


def casper_inputs(g: Graph, column: int = 0, labels: bool = True):
    load, parts = video_input(g, column, 80, "my_video.mp4", "Load Video (the shot)")
    members = [load, parts]
    if labels:
        lload, lparts = video_input(g, column, g.below(parts), "my_object_labels.mp4",
                                    "Load Video (label map: one grey value per object)")
        masks = g.add("GenOmnimatteMasksFromLabelMap", column, g.below(lparts))
        g.connect(lparts, "images", masks, "label_map")
        members += [lload, lparts, masks]
    else:
        mload, mparts = video_input(g, column, g.below(parts), "my_object_mask.mp4",
                                    "Load Video (mask of the object to remove)")
        masks = g.add("ImageToMask", column, g.below(mparts), channel="red")
        g.connect(mparts, "images", masks, "image")
        members += [mload, mparts, masks]
    g.group("1. Video and masks", members)
    return parts, masks


def casper_full(g: Graph):
    """(a) Load Video + label map → trimasks → Casper → fit → order by depth → composite, save."""
    parts, masks = casper_inputs(g)
    model = g.add("GenOmnimatteLoadCasperModel", 1, 80, **MODEL_FILES)
    trimasks = g.add("GenOmnimatteBuildTrimasks", 1, g.below(model))
    g.connect(parts, "images", trimasks, "video")
    g.connect(masks, "object_masks", trimasks, "object_masks")
    show_tri = g.add("PreviewImage", 1, g.below(trimasks), title="Trimasks (white remove, grey neutral, black keep)")
    g.connect(trimasks, "trimask_preview", show_tri, "images")
    remove = g.add("GenOmnimatteCasperRemove", 2, 80)
    g.connect(model, "casper_model", remove, "casper_model")
    g.connect(parts, "images", remove, "video")
    g.connect(trimasks, "trimask_jobs", remove, "trimask_jobs")
    g.group("2. Casper removal", [model, trimasks, show_tri, remove])
    fit = g.add("GenOmnimatteFitLayers", 3, 80)
    g.connect(remove, "solo_videos", fit, "solo_videos")
    g.connect(remove, "clean_background", fit, "clean_background")
    g.connect(masks, "object_masks", fit, "object_masks")
    g.connect(parts, "fps", fit, "fps")
    dload, dparts = video_input(g, 3, g.below(fit), "my_depth.mp4", "Load Video (depth, from any depth pack)")
    order = g.add("GenOmnimatteOrderLayersByDepth", 3, g.below(dparts))
    g.connect(fit, "layers", order, "layers")
    g.connect(dparts, "images", order, "depth")
    g.group("3. Fit layers, order", [fit, dload, dparts, order])
    composite = g.add("GenOmnimatteCompositeLayers", 4, 80)
    g.connect(order, "layers", composite, "layers")
    g.connect(parts, "images", composite, "video")
    video = g.add("CreateVideo", 4, g.below(composite))
    g.connect(composite, "composite", video, "images")
    g.connect(parts, "fps", video, "fps")
    save_video = g.add("SaveVideo", 4, g.below(video), filename_prefix="video/omnimatte_recomposite")
    g.connect(video, "VIDEO", save_video, "video")
    save = g.add("GenOmnimatteSaveLayers", 4, g.below(save_video))
    g.connect(order, "layers", save, "layers")
    g.group("4. Composite, save", [composite, video, save_video, save])


def remove_one(g: Graph):
    """(c) One object's mask → a background-only trimask job → Casper → the video without it and its effects."""
    parts, mask = casper_inputs(g, labels=False)
    model = g.add("GenOmnimatteLoadCasperModel", 1, 80, **MODEL_FILES)
    trimasks = g.add("GenOmnimatteBuildTrimasks", 1, g.below(model), jobs="background only")
    g.connect(parts, "images", trimasks, "video")
    g.connect(mask, "MASK", trimasks, "object_masks")
    show_tri = g.add("PreviewImage", 1, g.below(trimasks), title="Trimask (white = removed)")
    g.connect(trimasks, "trimask_preview", show_tri, "images")
    remove = g.add("GenOmnimatteCasperRemove", 2, 80)
    g.connect(model, "casper_model", remove, "casper_model")
    g.connect(parts, "images", remove, "video")
    g.connect(trimasks, "trimask_jobs", remove, "trimask_jobs")
    g.group("2. Casper removal", [model, trimasks, show_tri, remove])
    video = g.add("CreateVideo", 3, 80)
    g.connect(remove, "clean_background", video, "images")
    g.connect(parts, "fps", video, "fps")
    save_video = g.add("SaveVideo", 3, g.below(video), filename_prefix="video/object_removed")
    g.connect(video, "VIDEO", save_video, "video")
    g.group("3. Save the video", [video, save_video])


def full_resolution(g: Graph):
    """(d) Casper and the base fit at 672×384, then the bootstrapped fit at the input's resolution."""
    parts, masks = casper_inputs(g)
    scale = g.add("ImageScale", 1, 80, title="Video at Casper's base size", upscale_method="area", width=672,
                  height=384, crop="disabled")
    g.connect(parts, "images", scale, "image")
    lparts = next(n for n in g.nodes if n["type"] == "GetVideoComponents" and n["id"] != parts["id"])
    scale_labels = g.add("ImageScale", 1, g.below(scale), title="Label map at the base size",
                         upscale_method="nearest-exact", width=672, height=384, crop="disabled")
    g.connect(lparts, "images", scale_labels, "image")
    base_masks = g.add("GenOmnimatteMasksFromLabelMap", 1, g.below(scale_labels), title="Masks at the base size")
    g.connect(scale_labels, "IMAGE", base_masks, "label_map")
    g.group("2. Base resolution", [scale, scale_labels, base_masks])
    model = g.add("GenOmnimatteLoadCasperModel", 2, 80, **MODEL_FILES)
    trimasks = g.add("GenOmnimatteBuildTrimasks", 2, g.below(model))
    g.connect(scale, "IMAGE", trimasks, "video")
    g.connect(base_masks, "object_masks", trimasks, "object_masks")
    remove = g.add("GenOmnimatteCasperRemove", 2, g.below(trimasks))
    g.connect(model, "casper_model", remove, "casper_model")
    g.connect(scale, "IMAGE", remove, "video")
    g.connect(trimasks, "trimask_jobs", remove, "trimask_jobs")
    fit = g.add("GenOmnimatteFitLayers", 2, g.below(remove))
    g.connect(remove, "solo_videos", fit, "solo_videos")
    g.connect(remove, "clean_background", fit, "clean_background")
    g.connect(base_masks, "object_masks", fit, "object_masks")
    g.connect(parts, "fps", fit, "fps")
    g.group("3. Casper, base fit", [model, trimasks, remove, fit])
    upscale = g.add("GenOmnimatteUpscaleLayers", 3, 80)
    g.connect(fit, "layers", upscale, "base_layers")
    g.connect(remove, "solo_videos", upscale, "solo_videos")
    g.connect(parts, "images", upscale, "video")
    g.connect(masks, "object_masks", upscale, "object_masks")
    g.group("4. Full res", [upscale])
    composite = g.add("GenOmnimatteCompositeLayers", 4, 80)
    g.connect(upscale, "layers", composite, "layers")
    g.connect(parts, "images", composite, "video")
    video = g.add("CreateVideo", 4, g.below(composite))
    g.connect(composite, "composite", video, "images")
    g.connect(parts, "fps", video, "fps")
    save_video = g.add("SaveVideo", 4, g.below(video), filename_prefix="video/omnimatte_full_res")
    g.connect(video, "VIDEO", save_video, "video")
    save = g.add("GenOmnimatteSaveLayers", 4, g.below(save_video), filename_prefix="omnimatte_full_res")
    g.connect(upscale, "layers", save, "layers")
    g.group("5. Composite, save", [composite, video, save_video, save])


def new_background(g: Graph):
    """(e) Layers of the demo scene; keep one layer (with its shadow) and composite it over a new picture."""
    demo = g.add("GenOmnimatteDemoScene", 0, 80)
    plate = g.add("GenOmnimatteCleanPlate", 0, g.below(demo))
    g.connect(demo, "video", plate, "video")
    g.connect(demo, "object_masks", plate, "object_masks")
    fit = g.add("GenOmnimatteFitLayers", 1, 80, preset="preview")
    g.connect(plate, "solo_videos", fit, "solo_videos")
    g.connect(plate, "clean_background", fit, "clean_background")
    g.connect(demo, "object_masks", fit, "object_masks")
    g.connect(demo, "fps", fit, "fps")
    g.group("1. Layers", [demo, plate, fit])
    # ComfyUI's bundled example.png, so the workflow runs as shipped; pick any picture of yours instead.
    picture = g.add("LoadImage", 2, 80, title="Load Image (the new background)", image=BUNDLED_IMAGE)
    edit = g.add("GenOmnimatteEditLayers", 2, g.below(picture), drop_layers="1", background_fit="cover")
    g.connect(fit, "layers", edit, "layers")
    g.connect(picture, "IMAGE", edit, "new_background")
    g.group("2. Keep layer 0, new background", [picture, edit])
    composite = g.add("GenOmnimatteCompositeLayers", 3, 80, detail_transfer=False)
    g.connect(edit, "layers", composite, "layers")
    video = g.add("CreateVideo", 3, g.below(composite), fps=24.0)
    g.connect(composite, "composite", video, "images")
    save_video = g.add("SaveVideo", 3, g.below(video), filename_prefix="video/new_background")
    g.connect(video, "VIDEO", save_video, "video")
    to_image = g.add("GenOmnimatteLayersToImage", 3, g.below(save_video), layer_index=0)
    g.connect(fit, "layers", to_image, "layers")
    save_rgba = g.add("SaveImage", 3, g.below(to_image), title="Save Image (RGBA PNGs of layer 0)",
                      filename_prefix="omnimatte/layer0_rgba")
    g.connect(to_image, "rgba", save_rgba, "images")
    g.group("3. Composite, RGBA", [composite, video, save_video, to_image, save_rgba])


WORKFLOWS = {
    "a_full_decomposition_casper": casper_full,
    "b_weight_free_locked_off": weight_free,
    "c_remove_one_object": remove_one,
    "d_full_resolution_bootstrapped": full_resolution,
    "e_recomposite_new_background": new_background,
}


def main() -> None:
    specs = node_specs()
    for name, build in WORKFLOWS.items():
        graph = Graph(specs)
        build(graph)
        path = ROOT / "workflows" / f"{name}.json"
        path.write_text(json.dumps(graph.to_json(name), indent=1) + "\n")
        print(path.relative_to(ROOT), len(graph.nodes), "nodes", len(graph.links), "links")


if __name__ == "__main__":
    main()
