"""Fixtures of the node tests: the core ComfyUI node specs (from a real server) and workflow helpers.

ComfyUI workflows come in two formats: the UI format users drag into the canvas (``nodes`` with positions, ``links``
as ``[id, from_node, from_slot, to_node, to_slot, type]``, widget values as a list) and the API format the HTTP API
queues (``{id: {"class_type", "inputs"}}``). ``to_api`` converts the first into the second from the node specs, as
the frontend does when you press Queue.
"""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CORE_NODES_FILE = Path(__file__).parent / "fixtures" / "comfyui_core_nodes.json"
WORKFLOW_FILES = sorted((REPO_ROOT / "workflows").glob("*.json"))
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Widgets the frontend adds after an INT input of these names (the "control after generate" combo).
CONTROL_AFTER_GENERATE = {"seed", "noise_seed"}


def input_kind(type_):
    return "COMBO" if isinstance(type_, list) else type_


def node_inputs(spec: dict) -> list[tuple[str, object, dict]]:
    """``[(name, type, options)]`` in declaration order (required, then optional) from an INPUT_TYPES-like dict."""
    return [(name, s[0], s[1] if len(s) > 1 else {}) for section in ("required", "optional")
            for name, s in spec.get(section, {}).items()]


def node_specs(pack) -> dict:
    """``{type: {"inputs": [...], "outputs": [types], "output_names": [...]}}`` for our nodes and the core ones."""
    specs = {}
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        declared = cls.INPUT_TYPES()
        specs[name] = {"inputs": node_inputs(declared), "outputs": list(cls.RETURN_TYPES),
                       "output_names": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)), "ours": True,
                       "optional": set(declared.get("optional", {}))}
    for name, d in json.loads(CORE_NODES_FILE.read_text())["nodes"].items():
        specs[name] = {"inputs": node_inputs(d["input"]), "outputs": d["output"], "output_names": d["output_name"],
                       "ours": False, "optional": set(d["input"].get("optional", {}))}
    return specs


def widget_values(node: dict, spec: dict) -> dict:
    """The UI node's ``widgets_values`` list → ``{input name: value}`` (skipping control-after-generate entries)."""
    values = list(node.get("widgets_values") or [])
    out = {}
    for name, kind, options in spec["inputs"]:
        if input_kind(kind) not in WIDGET_TYPES:
            continue
        if not values:
            raise ValueError(f"node {node['id']} ({node['type']}): no widget value for {name!r}")
        out[name] = values.pop(0)
        if name in CONTROL_AFTER_GENERATE or options.get("control_after_generate"):
            values.pop(0)
        if (options.get("image_upload") or options.get("video_upload")) and values:
            values.pop(0)  # the frontend's upload button saves a value too
    if values:
        raise ValueError(f"node {node['id']} ({node['type']}): {len(values)} widget value(s) left over: {values}")
    return out


def to_api(workflow: dict, specs: dict, overrides: dict | None = None) -> dict:
    """UI-format workflow → API-format prompt. ``overrides``: ``{node type: {input: value}}`` applied to widgets."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) != 0:
            continue
        spec = specs[node["type"]]
        inputs = widget_values(node, spec)
        inputs.update((overrides or {}).get(node["type"], {}))
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                _, origin, origin_slot, *_ = links[slot["link"]]
                inputs[slot["name"]] = [str(origin), origin_slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


@pytest.fixture(scope="session")
def specs(pack):
    return node_specs(pack)


@pytest.fixture(scope="session")
def workflow_tools():
    return SimpleNamespace(to_api=to_api, widget_values=widget_values, input_kind=input_kind,
                           WIDGET_TYPES=WIDGET_TYPES, WORKFLOW_FILES=WORKFLOW_FILES, REPO_ROOT=REPO_ROOT,
                           CORE_NODES_FILE=CORE_NODES_FILE)
