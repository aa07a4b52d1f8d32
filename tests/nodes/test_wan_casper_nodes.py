"""Load Casper Model picks the family from the files it finds: a Wan2.1-Fun-InP release folder loads Casper on Wan,
and Casper Remove and Build Trimasks (with occluders) work on it unchanged (tiny random release, CPU)."""
import shutil

import pytest
import torch

FRAMES, HEIGHT, WIDTH = 5, 32, 48


@pytest.fixture(scope="module")
def wan_models_dir(tmp_path_factory):
    pytest.importorskip("diffusers")
    wan_testing = pytest.importorskip("casper_core.wan_testing")
    root = tmp_path_factory.mktemp("models")
    release = wan_testing.write_tiny_wan_release(root / "Fun_Models", seed=0)
    (root / "casper").mkdir()
    shutil.move(str(release.casper_weights), root / "casper" / release.casper_weights.name)
    return root


def test_load_casper_model_chooses_wan_from_the_files(pack, wan_models_dir, monkeypatch):
    monkeypatch.setenv("COMFYUI_MODELS_DIR", str(wan_models_dir))
    nodes = pack.NODE_CLASS_MAPPINGS
    assert "Fun_Models/Wan2.1-Fun-1.3B-InP" in nodes["GenOmnimatteLoadCasperModel"].INPUT_TYPES()["required"][
        "base_model"][0]
    video, masks, *_ = nodes["GenOmnimatteDemoScene"]().generate(0, 2, FRAMES, WIDTH, HEIGHT, "static")
    with torch.inference_mode():
        model, = nodes["GenOmnimatteLoadCasperModel"]().load(
            "Fun_Models/Wan2.1-Fun-1.3B-InP", "casper_wan2.1_fun_1.3b.safetensors", "fp32", "gpu", "auto", False)
        # (the pack is imported under its own package name, so its classes are compared by name)
        assert type(model).__name__ == "WanCasperPipeline" and model.load_report.casper_format == "safetensors"
        jobs, _, names = nodes["GenOmnimatteBuildTrimasks"]().build(video, masks, 3, "background + solos")
        background, solos = nodes["GenOmnimatteCasperRemove"]().remove(model, video, jobs, "empty scene", 1, 0, 9, 4,
                                                                       0, 0)
    assert names == "background, solo_0, solo_1"
    assert background.shape == video.shape and solos.shape == (2 * FRAMES, HEIGHT, WIDTH, 3)
    assert torch.isfinite(solos).all() and not torch.equal(solos[:FRAMES], solos[FRAMES:])


def test_build_trimasks_takes_occluders(pack):
    nodes = pack.NODE_CLASS_MAPPINGS
    video = torch.zeros(2, 16, 16, 3)
    masks = torch.zeros(4, 16, 16)  # two objects × two frames, the second (a pole) over the first's right half
    masks[0:2, 4:12, 2:10] = 1
    masks[2:4, :, 7:9] = 1
    build = nodes["GenOmnimatteBuildTrimasks"]().build
    plain, _, _ = build(video, masks, 0, "background + solos")
    recipe, _, _ = build(video, masks, 0, "background + solos", occluders="1,0")
    overlap = (slice(None), slice(4, 12), slice(7, 9))
    assert torch.all(plain.trimasks[2][overlap] == 1.0)   # as released: the other object wins the overlap
    assert torch.all(recipe.trimasks[2][overlap] == 0.0)  # the pole is in front: its solo keeps the overlap
    assert torch.all(recipe.trimasks[1][overlap] == 1.0)  # and object 0's solo removes the pole over it
    with pytest.raises(ValueError, match="occluders"):
        build(video, masks, 0, "background + solos", occluders="0,0")


def test_cogvideox_speed_options_are_refused_for_wan(pack, wan_models_dir, monkeypatch):
    monkeypatch.setenv("COMFYUI_MODELS_DIR", str(wan_models_dir))
    load = pack.NODE_CLASS_MAPPINGS["GenOmnimatteLoadCasperModel"]()
    args = ("Fun_Models/Wan2.1-Fun-1.3B-InP", "casper_wan2.1_fun_1.3b.safetensors", "fp32", "gpu", "auto", False)
    for option in ("compile", "fp8_compute"):
        with pytest.raises(ValueError, match="options of the CogVideoX-Fun base model.*Wan2.1-Fun model"):
            load.load(*args, **{option: True})
