"""Every example workflow: UI format with a version, known node types, links between matching types, valid widgets."""
import inspect
import json

from pathlib import Path

import pytest

WORKFLOW_FILES = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.json"))


# Their dropdowns list the files of this machine's models/input folders: the saved names are examples.
FILE_LIST_NODES = {"GenOmnimatteLoadCasperModel", "LoadVideo", "LoadImage"}


def load(path):
    return json.loads(path.read_text())


def test_the_five_example_workflows_exist(workflow_tools):
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
    # nodes do not overlap
    boxes = [(n["pos"][0], n["pos"][1], n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
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
