"""End to end in a real ComfyUI: the pack in custom_nodes, the weight-free workflow queued through the HTTP API.

Runs when ``COMFYUI_PATH`` points at a checkout of github Comfy-Org/ComfyUI whose Python environment has ComfyUI's
requirements and ours (``COMFYUI_PYTHON``, default: the Python running the tests); skipped otherwise. The server runs
on the CPU on a free loopback port with a temporary custom_nodes/output folder, so the checkout is never written to.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
pytestmark = pytest.mark.skipif(not COMFYUI_PATH or not (Path(COMFYUI_PATH) / "main.py").is_file(),
                                reason="set COMFYUI_PATH to a ComfyUI checkout to run the real-server test")
WEIGHT_FREE = "b_weight_free_locked_off.json"
NEW_BACKGROUND = "e_recomposite_new_background.json"
FRAMES, WIDTH, HEIGHT = 6, 96, 64
# Tiny and fast: the point is the plumbing (loading, types, execution, saving), not the fit's quality.
OVERRIDES = {
    "GenOmnimatteDemoScene": {"frames": FRAMES, "width": WIDTH, "height": HEIGHT},
    "GenOmnimatteFitLayers": {"steps": 3},
    "GenOmnimatteSaveLayers": {"alpha_video": "none", "previews": False},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _post(url: str, payload: dict):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("comfy")
    (work / "custom_nodes").mkdir()
    # Any folder name works: the pack imports itself relatively.
    os.symlink(Path(__file__).resolve().parents[2], work / "custom_nodes" / "ComfyUI-GenerativeOmnimatte")
    for name in ("input", "output"):
        (work / name).mkdir()
    # What a fresh install's input folder holds (workflow e uses it as its new background).
    bundled = Path(COMFYUI_PATH) / "input" / "example.png"
    if bundled.is_file():
        shutil.copy(bundled, work / "input" / "example.png")
    extra = work / "extra_model_paths.yaml"
    extra.write_text(f"test:\n  base_path: {work}\n  custom_nodes: custom_nodes\n")
    port = _free_port()
    log = open(work / "server.log", "w")
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    process = subprocess.Popen(
        [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
         "--extra-model-paths-config", str(extra), "--output-directory", str(work / "output"),
         "--input-directory", str(work / "input")],
        cwd=COMFYUI_PATH, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            try:
                object_info = _get(base + "/object_info", timeout=30)
                break
            except Exception:  # noqa: BLE001 — still starting
                if process.poll() is not None or time.time() > deadline:
                    log.flush()
                    pytest.fail("ComfyUI did not start:\n" + (work / "server.log").read_text()[-4000:])
                time.sleep(2)
        yield {"base": base, "object_info": object_info, "output": work / "output", "log": work / "server.log"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_server_lists_every_node_without_import_error(server, pack):
    log = server["log"].read_text()
    assert "IMPORT FAILED" not in log or "GenerativeOmnimatte" not in log.split("IMPORT FAILED", 1)[1][:300], log
    missing = set(pack.NODE_CLASS_MAPPINGS) - set(server["object_info"])
    assert not missing, f"the server does not list {sorted(missing)}"
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        info = server["object_info"][name]
        assert info["category"].startswith("Generative Omnimatte/")
        assert info["display_name"] == pack.NODE_DISPLAY_NAME_MAPPINGS[name]
        assert info["output"] == list(cls.RETURN_TYPES)


def test_core_node_fixture_matches_this_server(server, workflow_tools):
    fixture = json.loads(workflow_tools.CORE_NODES_FILE.read_text())["nodes"]
    for name, spec in fixture.items():
        assert name in server["object_info"], f"core node {name} is not known to this ComfyUI"
        assert server["object_info"][name]["output"] == spec["output"]


def test_weight_free_workflow_runs_to_saved_layers(server, specs, workflow_tools):
    workflow = json.loads((workflow_tools.REPO_ROOT / "workflows" / WEIGHT_FREE).read_text())
    prompt = workflow_tools.to_api(workflow, specs, OVERRIDES)
    queued = _post(server["base"] + "/prompt", {"prompt": prompt, "client_id": "generative-omnimatte-test"})
    assert not queued.get("node_errors"), queued
    prompt_id = queued["prompt_id"]
    deadline, history = time.time() + 600, {}
    while time.time() < deadline:
        history = _get(f"{server['base']}/history/{prompt_id}").get(prompt_id, {})
        if history.get("status", {}).get("completed") or history.get("status", {}).get("status_str") == "error":
            break
        time.sleep(2)
    status = history.get("status", {})
    assert status.get("status_str") == "success", json.dumps(status)[:4000] + server["log"].read_text()[-3000:]

    save_id = next(n["id"] for n in workflow["nodes"] if n["type"] == "GenOmnimatteSaveLayers")
    folder = Path(history["outputs"][str(save_id)]["text"][0])
    assert folder.parent == server["output"].resolve() or folder.parent == server["output"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["frames"], manifest["width"], manifest["height"]) == (FRAMES, WIDTH, HEIGHT)
    assert [layer["name"] for layer in manifest["layers"]] == ["shadow_object", "reflection_object"]
    assert len(manifest["order_front_to_back"]) == FRAMES
    from PIL import Image
    for layer in manifest["layers"]:
        pngs = sorted((folder / Path(layer["files"]["png"]).parent).glob("*.png"))
        assert len(pngs) == FRAMES
        rgba = np.asarray(Image.open(pngs[0]))
        assert rgba.shape == (HEIGHT, WIDTH, 4)
        # the layer is neither empty nor opaque everywhere: it holds an object over transparency
        assert rgba[..., 3].max() > 128 and rgba[..., 3].min() < 128
    # the node shows the first frame of each layer from the output folder
    images = history["outputs"][str(save_id)]["images"]
    assert len(images) == 2 and all((server["output"] / i["subfolder"] / i["filename"]).is_file() for i in images)
    # the recomposited video was saved by core Save Video
    assert list(server["output"].rglob("omnimatte_recomposite*.mp4"))


def _run_prompt(server, prompt, timeout=600):
    queued = _post(server["base"] + "/prompt", {"prompt": prompt, "client_id": "generative-omnimatte-test"})
    assert not queued.get("node_errors"), queued
    deadline, history = time.time() + timeout, {}
    while time.time() < deadline:
        history = _get(f"{server['base']}/history/{queued['prompt_id']}").get(queued["prompt_id"], {})
        if history.get("status", {}).get("completed") or history.get("status", {}).get("status_str") == "error":
            break
        time.sleep(2)
    return history


def test_new_background_workflow_runs_as_shipped(server, specs, workflow_tools):
    # Workflow e as a user gets it: its Load Image names ComfyUI's bundled example.png, nothing else is needed.
    workflow = json.loads((workflow_tools.REPO_ROOT / "workflows" / NEW_BACKGROUND).read_text())
    overrides = {"GenOmnimatteDemoScene": OVERRIDES["GenOmnimatteDemoScene"], "GenOmnimatteFitLayers": {"steps": 3}}
    history = _run_prompt(server, workflow_tools.to_api(workflow, specs, overrides))
    status = history.get("status", {})
    assert status.get("status_str") == "success", json.dumps(status)[:4000] + server["log"].read_text()[-3000:]
    assert list(server["output"].rglob("new_background*.mp4"))
    pngs = sorted(server["output"].rglob("layer0_rgba*.png"))
    assert len(pngs) == FRAMES
    from PIL import Image
    assert Image.open(pngs[0]).mode == "RGBA"


def test_interrupt_stops_a_long_fit_promptly(server, specs, workflow_tools):
    workflow = json.loads((workflow_tools.REPO_ROOT / "workflows" / WEIGHT_FREE).read_text())
    overrides = {**OVERRIDES, "GenOmnimatteFitLayers": {"steps": 100000},
                 "GenOmnimatteDemoScene": {**OVERRIDES["GenOmnimatteDemoScene"], "seed": 1}}
    prompt = workflow_tools.to_api(workflow, specs, overrides)
    prompt_id = _post(server["base"] + "/prompt", {"prompt": prompt, "client_id": "generative-omnimatte-test"})[
        "prompt_id"]
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until this prompt runs, then give it time to reach the fit
        running = _get(server["base"] + "/queue")["queue_running"]
        if running and running[0][1] == prompt_id:
            break
        time.sleep(0.5)
    time.sleep(4)
    asked = time.time()
    request = urllib.request.Request(server["base"] + "/interrupt", data=b"{}",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()
    history = {}
    while time.time() < asked + 60:
        history = _get(f"{server['base']}/history/{prompt_id}").get(prompt_id, {})
        if history.get("status", {}).get("completed") is not None and history.get("status", {}).get("messages"):
            break
        time.sleep(0.5)
    messages = [m[0] for m in history.get("status", {}).get("messages", [])]
    assert "execution_interrupted" in messages, history.get("status")
    interrupted = dict(history["status"]["messages"])["execution_interrupted"]
    assert interrupted["node_type"] == "GenOmnimatteFitLayers"
    assert time.time() - asked < 30  # 100000 steps would take hours: the fit stopped within a step or so
