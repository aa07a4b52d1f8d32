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
    return root


def test_casper_nodes_remove_objects_on_a_tiny_model(pack, models_dir, monkeypatch):
    monkeypatch.setenv("COMFYUI_MODELS_DIR", str(models_dir))
    nodes = pack.NODE_CLASS_MAPPINGS
    video, masks, *_ = nodes["GenOmnimatteDemoScene"]().generate(0, 2, FRAMES, WIDTH, HEIGHT, "static")
    with torch.inference_mode():
        model, = nodes["GenOmnimatteLoadCasperModel"]().load(
            "CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP", "casper_cogvideox_fun_v1.5.safetensors", "fp32", "gpu",
            "auto", False)
        jobs, _, _ = nodes["GenOmnimatteBuildTrimasks"]().build(video, masks, 3, "background + solos")
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
