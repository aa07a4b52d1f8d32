"""Load Casper Model → Build Trimasks → Casper Remove on a tiny checkpoint in the release format (CPU, seconds).

Active once ``casper_core.pipeline`` is importable; the loading errors are tested in test_node_runs.py.
"""
import shutil

import pytest
import torch

FRAMES, HEIGHT, WIDTH = 5, 32, 48


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    pytest.importorskip("diffusers")
    testing = pytest.importorskip("casper_core.testing")
    pytest.importorskip("casper_core.pipeline")
    root = tmp_path_factory.mktemp("models")
    release = testing.write_tiny_release(root / "CogVideoX_Fun", seed=0)
    (root / "casper").mkdir()
    shutil.move(str(release.casper_weights), root / "casper" / release.casper_weights.name)
    other = testing.write_tiny_release(root / "other", seed=0, transformer_overrides={"num_attention_heads": 4})
    shutil.move(str(other.casper_weights), root / "casper" / "other_architecture.safetensors")
    from safetensors.torch import load_file, save_file
    casper = load_file(root / "casper" / release.casper_weights.name)
    save_file({k: casper[k] for k in sorted(casper)[:5]}, str(root / "casper" / "partial.safetensors"))
    return root


def _demo_scene_model_and_jobs(pack, models_dir, monkeypatch):
    """The demo scene, the tiny release loaded through Load Casper Model and its trimask jobs (background + solos)."""
    monkeypatch.setenv("COMFYUI_MODELS_DIR", str(models_dir))
    nodes = pack.NODE_CLASS_MAPPINGS
    video, masks, *_ = nodes["GenOmnimatteDemoScene"]().generate(0, 2, FRAMES, WIDTH, HEIGHT, "static")
    with torch.inference_mode():
        model, = nodes["GenOmnimatteLoadCasperModel"]().load(
            "CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP", "casper_cogvideox_fun_v1.5.safetensors", "fp32", "gpu",
            "auto", False)
        jobs, _, _ = nodes["GenOmnimatteBuildTrimasks"]().build(video, masks, 3, "background + solos")
    return nodes, video, model, jobs


def test_casper_nodes_remove_objects_on_a_tiny_model(pack, models_dir, monkeypatch):
    nodes, video, model, jobs = _demo_scene_model_and_jobs(pack, models_dir, monkeypatch)
    with torch.inference_mode():
        background, solos = nodes["GenOmnimatteCasperRemove"]().remove(model, video, jobs, "empty scene", 1, 0, 85,
                                                                       16, 0, 0)
    # any frame count and size in, the same out (the pipeline pads and crops); one video per object
    assert background.shape == video.shape and solos.shape == (2 * FRAMES, HEIGHT, WIDTH, 3)
    assert torch.isfinite(background).all() and 0 <= float(background.min()) and float(background.max()) <= 1
    # the two solo videos differ: each keeps a different object
    assert not torch.equal(solos[:FRAMES], solos[FRAMES:])


def test_casper_weights_for_another_architecture_are_refused(pack, models_dir, monkeypatch):
    monkeypatch.setenv("COMFYUI_MODELS_DIR", str(models_dir))
    load = pack.NODE_CLASS_MAPPINGS["GenOmnimatteLoadCasperModel"]()
    with pytest.raises(ValueError, match="architecture"):
        load.load("CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP", "other_architecture.safetensors", "fp32", "gpu", "auto",
                  False)


class _RecordWorkingSize:
    """Wraps a pipeline's `encode_video` to record the pixel size Casper runs at."""

    def __init__(self, model):
        self.sizes, self._encode = [], model.encode_video
        model.encode_video = self

    def __call__(self, pixels, augmentation):
        self.sizes.append(tuple(pixels.shape[-2:]))
        return self._encode(pixels, augmentation)


@pytest.mark.parametrize("width, height, working", [(48, 32, (32, 48)), (0, 0, (48, 96))])
def test_casper_remove_runs_at_the_set_working_size_and_returns_the_input_size(pack, models_dir, monkeypatch,
                                                                               width, height, working):
    monkeypatch.setenv("COMFYUI_MODELS_DIR", str(models_dir))
    nodes = pack.NODE_CLASS_MAPPINGS
    # 50 × 90: not a multiple of 16; 0 × 0 means the input size rounded to 16 (48 × 96)
    video, masks, *_ = nodes["GenOmnimatteDemoScene"]().generate(0, 2, FRAMES, 90, 50, "static")
    assert video.shape == (FRAMES, 50, 90, 3)
    with torch.inference_mode():
        model, = nodes["GenOmnimatteLoadCasperModel"]().load(
            "CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP", "casper_cogvideox_fun_v1.5.safetensors", "fp32", "gpu",
            "auto", False)
        record = _RecordWorkingSize(model)
        jobs, _, _ = nodes["GenOmnimatteBuildTrimasks"]().build(video, masks, 3, "background + solos")
        background, solos = nodes["GenOmnimatteCasperRemove"]().remove(model, video, jobs, "empty scene", 1, 0, 85,
                                                                       16, width, height)
    assert record.sizes == [working]  # one encode of the video, at the working size
    assert background.shape == (FRAMES, 50, 90, 3) and solos.shape == (2 * FRAMES, 50, 90, 3)
    assert torch.isfinite(background).all() and 0 <= float(background.min()) and float(background.max()) <= 1


def test_casper_remove_takes_the_reference_overlap_on_a_one_window_clip(pack, models_dir, monkeypatch):
    monkeypatch.setenv("COMFYUI_MODELS_DIR", str(models_dir))
    nodes = pack.NODE_CLASS_MAPPINGS
    remove = nodes["GenOmnimatteCasperRemove"]
    # the reference's short-clip defaults: window 13 frames, overlap ("stride") 16
    assert remove.VALIDATE_INPUTS(window_frames=13, overlap_frames=16) is True
    video, masks, *_ = nodes["GenOmnimatteDemoScene"]().generate(0, 1, FRAMES, WIDTH, HEIGHT, "static")
    with torch.inference_mode():
        model, = nodes["GenOmnimatteLoadCasperModel"]().load(
            "CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP", "casper_cogvideox_fun_v1.5.safetensors", "fp32", "gpu",
            "auto", False)
        jobs, _, _ = nodes["GenOmnimatteBuildTrimasks"]().build(video, masks, 3, "background only")
        background, _ = remove().remove(model, video, jobs, "empty scene", 1, 0, 13, 16, WIDTH, HEIGHT)
    assert background.shape == video.shape and torch.isfinite(background).all()


def test_partial_casper_weights_need_allow_partial_weights(pack, models_dir, monkeypatch):
    monkeypatch.setenv("COMFYUI_MODELS_DIR", str(models_dir))
    load = pack.NODE_CLASS_MAPPINGS["GenOmnimatteLoadCasperModel"]
    spec = load.INPUT_TYPES()["optional"]["allow_partial_weights"]
    assert spec[0] == "BOOLEAN" and spec[1]["default"] is False and "90 %" in spec[1]["tooltip"]
    args = ("CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP", "partial.safetensors", "fp32", "gpu", "auto", False)
    with pytest.raises(ValueError, match=r"partial\.safetensors: replaces only 5 of the transformer's 64 tensors"):
        load().load(*args)
    model, = load().load(*args, allow_partial_weights=True)
    assert model.load_report.overridden_keys == 5


class _FakeProgressBar:
    """Stands in for ``comfy.utils.ProgressBar``: records every ``update_absolute(value, total, preview)``."""
    updates = []

    def __init__(self, total, node_id=None):
        self.total = total

    def update_absolute(self, value, total=None, preview=None):
        self.updates.append((value, total, preview))


def test_casper_remove_shows_latent_previews_and_progress_through_the_decode(pack, models_dir, monkeypatch):
    import sys
    import types

    from PIL import Image

    nodes, video, model, jobs = _demo_scene_model_and_jobs(pack, models_dir, monkeypatch)
    with torch.inference_mode():
        # inside ComfyUI: its progress bar receives the previews
        fake_comfy, fake_utils = types.ModuleType("comfy"), types.ModuleType("comfy.utils")
        fake_utils.ProgressBar = _FakeProgressBar
        fake_comfy.utils = fake_utils
        monkeypatch.setitem(sys.modules, "comfy", fake_comfy)
        monkeypatch.setitem(sys.modules, "comfy.utils", fake_utils)
        _FakeProgressBar.updates = []
        nodes["GenOmnimatteCasperRemove"]().remove(model, video, jobs, "empty scene", 2, 0, 85, 16, WIDTH, HEIGHT,
                                                   batch_size=1)
    updates = _FakeProgressBar.updates
    total = updates[0][1]
    assert [u[:2] for u in updates] == [(i, total) for i in range(1, total + 1)]  # one bar to the end
    previews = [u[2] for u in updates if u[2] is not None]
    assert len(previews) == 2 * 3  # every step of the 3 jobs (batch_size 1) has a preview
    assert total > 2 * 3  # ... and the bar goes on through the VAE decode of each job
    kind, image, max_size = previews[0]
    assert kind == "JPEG" and isinstance(image, Image.Image) and image.size == (WIDTH, HEIGHT) and max_size > 0
    assert updates[-1][2] is None  # the last report is the last decode chunk


def test_casper_remove_runs_without_comfyui_progress(pack, models_dir, monkeypatch):
    # Outside ComfyUI (no comfy.utils) the same reports go nowhere and the run completes.
    import sys

    monkeypatch.setenv("COMFYUI_MODELS_DIR", str(models_dir))
    monkeypatch.setitem(sys.modules, "comfy.utils", None)  # import fails, as without ComfyUI
    nodes = pack.NODE_CLASS_MAPPINGS
    video, masks, *_ = nodes["GenOmnimatteDemoScene"]().generate(0, 1, FRAMES, WIDTH, HEIGHT, "static")
    comfy = __import__(f"{pack.__name__}.nodes.comfy_integration", fromlist=["Progress"])
    previews = []
    original = comfy.Progress.__call__

    def spy(self, step, total=None, preview=None):
        previews.append(preview)
        return original(self, step, total, preview)

    monkeypatch.setattr(comfy.Progress, "__call__", spy)
    with torch.inference_mode():
        model, = nodes["GenOmnimatteLoadCasperModel"]().load(
            "CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP", "casper_cogvideox_fun_v1.5.safetensors", "fp32", "gpu",
            "auto", False)
        jobs, _, _ = nodes["GenOmnimatteBuildTrimasks"]().build(video, masks, 3, "background only")
        background, _ = nodes["GenOmnimatteCasperRemove"]().remove(model, video, jobs, "empty scene", 1, 0, 85, 16,
                                                                   WIDTH, HEIGHT)
    assert background.shape == video.shape
    assert previews[0] is not None and previews[0].shape == (HEIGHT, WIDTH, 3) and previews[-1] is None


def test_speed_options_reach_the_loader_and_are_refused_on_the_cpu(pack, models_dir, monkeypatch):
    monkeypatch.setenv("COMFYUI_MODELS_DIR", str(models_dir))
    load = pack.NODE_CLASS_MAPPINGS["GenOmnimatteLoadCasperModel"]
    spec = load.INPUT_TYPES()
    for name in ("compile", "fp8_compute"):
        assert spec["optional"][name][0] == "BOOLEAN" and spec["optional"][name][1]["default"] is False
    assert "sage" in spec["required"]["attention_backend"][0]
    args = ("CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP", "casper_cogvideox_fun_v1.5.safetensors", "fp32", "gpu")
    with pytest.raises(ValueError, match="compile needs a CUDA GPU"):
        load().load(*args, "auto", False, compile=True)
    with pytest.raises(ValueError, match=r"fp8_compute needs a CUDA GPU of compute capability ≥ 8\.9"):
        load().load(*args, "auto", False, fp8_compute=True)
    with pytest.raises(ValueError, match="'sage'.*only on CUDA GPUs"):
        load().load(*args, "sage", False)
