"""Every example workflow: UI format with a version, known node types, links between matching types, valid widgets."""
import inspect
import json

from pathlib import Path

import pytest

WORKFLOW_FILES = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.json"))


# Their dropdowns list the files of this machine's models/input folders: the saved names are examples.
FILE_LIST_NODES = {"GenOmnimatteLoadCasperModel", "LoadVideo", "LoadImage"}
TITLE_HEIGHT = 30  # the frontend draws a node's title bar above its position
# Nodes that show a picture or video on the canvas: live previews while they run (Casper Remove, the fits), their
# images or video after (and the Load nodes, the file). The frontend grows a node too small for its preview, over
# whatever lies below it, so each keeps this much room below its slots and widgets.
PREVIEW_NODES = {"GenOmnimatteCasperRemove", "GenOmnimatteFitLayers", "GenOmnimatteUpscaleLayers",
                 "GenOmnimatteSaveLayers", "PreviewImage", "SaveImage", "SaveVideo", "LoadImage", "LoadVideo"}
PREVIEW_ROOM = 256
# Folder names ComfyUI's Templates browser reads in a custom node pack; it lists every one it finds.
TEMPLATE_FOLDERS = ("example_workflows", "example", "examples", "workflow", "workflows")
# Workflows that need no file of the user's: only what every ComfyUI install has (its input/example.png).
RUN_AS_SHIPPED = {"b_weight_free_locked_off", "e_recomposite_new_background"}
BUNDLED_INPUTS = {"example.png"}


def _load_tool(root, name):
    """A script under tools/, loaded from its file (sys.path untouched)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, root / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(path):
    return json.loads(path.read_text())


def test_the_five_workflows_exist(workflow_tools):
    names = [p.stem for p in workflow_tools.WORKFLOW_FILES]
    assert [n[0] for n in names] == ["a", "b", "c", "d", "e"], names


def test_core_fixture_names_its_comfyui_version(workflow_tools):
    fixture = json.loads(workflow_tools.CORE_NODES_FILE.read_text())
    assert fixture["comfyui_version"].count(".") == 2
    assert {"LoadVideo", "GetVideoComponents", "ImageToMask", "CreateVideo", "SaveVideo"} <= set(fixture["nodes"])


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_workflow_is_full_ui_format(path):
    workflow = load(path)
    assert workflow["version"] == 0.4
    assert workflow["last_node_id"] == max(n["id"] for n in workflow["nodes"])
    assert workflow["last_link_id"] == max(link[0] for link in workflow["links"])
    assert workflow["groups"], "stages are grouped"
    for node in workflow["nodes"]:
        assert len(node["pos"]) == 2 and len(node["size"]) == 2 and node["size"][0] > 100
    # laid out left to right: every link goes rightwards or stays in its column
    by_id = {n["id"]: n for n in workflow["nodes"]}
    for _, origin, _, target, _, _ in workflow["links"]:
        assert by_id[origin]["pos"][0] <= by_id[target]["pos"][0], (origin, target)
    # nodes do not overlap, title bars (drawn above a node's position) included
    boxes = [(n["pos"][0], n["pos"][1] - TITLE_HEIGHT, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
             for n in workflow["nodes"]]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_workflow_types_links_and_widgets(path, specs, workflow_tools):
    workflow = load(path)
    by_id = {n["id"]: n for n in workflow["nodes"]}
    for node in workflow["nodes"]:
        assert node["type"] in specs, f"{path.name}: unknown node type {node['type']}"
    for link_id, origin, origin_slot, target, target_slot, type_ in workflow["links"]:
        source, sink = by_id[origin], by_id[target]
        produced = specs[source["type"]]["outputs"][origin_slot]
        slot = sink["inputs"][target_slot]
        assert slot["link"] == link_id and link_id in source["outputs"][origin_slot]["links"]
        declared = dict((n, workflow_tools.input_kind(k)) for n, k, _ in specs[sink["type"]]["inputs"])
        assert produced == type_ == declared[slot["name"]], \
            f"{path.name}: link {link_id} {source['type']}:{produced} → {sink['type']}.{slot['name']}"
    for node in workflow["nodes"]:
        spec = specs[node["type"]]
        linked = {s["name"] for s in node.get("inputs", []) if s.get("link") is not None}
        links_needed = [n for n, k, _ in spec["inputs"]
                        if workflow_tools.input_kind(k) not in workflow_tools.WIDGET_TYPES and n not in spec["optional"]]
        for name in links_needed:
            assert name in linked, f"{path.name}: {node['type']}.{name} is not connected"
        values = workflow_tools.widget_values(node, spec)
        for name, kind, options in spec["inputs"]:
            if name not in values or name in linked:
                continue
            value = values[name]
            choices = kind if isinstance(kind, list) else options.get("options")
            kind = workflow_tools.input_kind(kind)
            if kind == "COMBO" and node["type"] not in FILE_LIST_NODES:
                assert choices, f"{node['type']}.{name}: no choices declared"
                assert value in choices, f"{path.name}: {node['type']}.{name} = {value!r} not in {choices}"
            elif kind in ("INT", "FLOAT"):
                assert isinstance(value, (int, float)) and options.get("min", value) <= value <= options.get(
                    "max", value), f"{path.name}: {node['type']}.{name} = {value!r}"
            elif kind == "BOOLEAN":
                assert isinstance(value, bool)
            elif kind == "STRING":
                assert isinstance(value, str)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_workflow_converts_to_api_format(path, specs, pack, workflow_tools):
    prompt = workflow_tools.to_api(load(path), specs)
    for node_id, node in prompt.items():
        cls = pack.NODE_CLASS_MAPPINGS.get(node["class_type"])
        if cls is None:
            continue
        spec = cls.INPUT_TYPES()
        assert set(spec["required"]) <= set(node["inputs"]), (path.name, node_id, node["class_type"])
        if hasattr(cls, "VALIDATE_INPUTS"):
            wanted = inspect.signature(cls.VALIDATE_INPUTS).parameters
            widgets = {k: v for k, v in node["inputs"].items() if not isinstance(v, list) and k in wanted}
            assert cls.VALIDATE_INPUTS(**widgets) is True or node["class_type"] == "GenOmnimatteLoadCasperModel"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_nodes_with_previews_keep_room_for_them(path):
    workflow = load(path)
    for node in workflow["nodes"]:
        if node["type"] not in PREVIEW_NODES:
            continue
        slots = max(len([s for s in node.get("inputs", []) if "widget" not in s]), len(node.get("outputs", [])))
        widgets = len(node.get("widgets_values") or [])
        body = 20 * slots + 24 * widgets  # the frontend's slot and widget rows
        assert node["size"][1] >= body + PREVIEW_ROOM, (path.name, node["id"], node["type"], node["size"])


def test_templates_live_in_one_folder_each_with_a_thumbnail(workflow_tools):
    root = workflow_tools.REPO_ROOT
    # one folder only: ComfyUI would list a copy in a second folder twice
    folders = [name for name in TEMPLATE_FOLDERS if list((root / name).glob("*.json"))]
    assert folders == ["workflows"], folders
    import hashlib

    from PIL import Image
    render_thumbnails = _load_tool(root, "render_thumbnails")
    for path in WORKFLOW_FILES:
        thumbnail = path.with_suffix(".jpg")  # the name the frontend asks for
        assert thumbnail.is_file(), f"{thumbnail.name} is missing: run python tools/render_thumbnails.py"
        with Image.open(thumbnail) as image:
            assert image.format == "JPEG" and image.size == render_thumbnails.SIZE
            drawn_from = image.info.get("comment", b"").decode()
        assert drawn_from == f"source-sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}", \
            f"{thumbnail.name} was drawn from another version of {path.name}: run python tools/render_thumbnails.py"


def test_thumbnails_are_drawn_from_the_workflow(workflow_tools):
    render_thumbnails = _load_tool(workflow_tools.REPO_ROOT, "render_thumbnails")
    workflow = load(WORKFLOW_FILES[0])
    image = render_thumbnails.render(workflow, "title", {})
    colours = image.getcolors(maxcolors=1 << 16)
    assert image.size == render_thumbnails.SIZE and (colours is None or len(colours) > 50)  # a drawing, not blank


@pytest.mark.parametrize("path", [p for p in WORKFLOW_FILES if p.stem in RUN_AS_SHIPPED], ids=lambda p: p.stem)
def test_runs_as_shipped_with_only_files_every_install_has(path, specs, workflow_tools):
    workflow = load(path)
    for node in workflow["nodes"]:
        assert node["type"] != "LoadVideo", f"{path.name}: a Load Video needs the user's file"
        if node["type"] == "LoadImage":
            image = workflow_tools.widget_values(node, specs["LoadImage"])["image"]
            assert image in BUNDLED_INPUTS, f"{path.name}: {image!r} is not in a fresh ComfyUI's input folder"


def test_label_maps_use_the_automatic_tolerance(specs, workflow_tools):
    default = dict((n, o) for n, _, o in specs["GenOmnimatteMasksFromLabelMap"]["inputs"])["tolerance"]["default"]
    assert default == -1
    for path in WORKFLOW_FILES:
        for node in load(path)["nodes"]:
            if node["type"] == "GenOmnimatteMasksFromLabelMap":
                values = workflow_tools.widget_values(node, specs[node["type"]])
                assert values["tolerance"] == default, (path.name, node["id"])
