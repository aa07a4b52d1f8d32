"""Nodes run on tiny inputs the way ComfyUI calls them: under torch.inference_mode(), with ComfyUI's tensor layouts.

Demo Scene → Clean Plate → Fit (a few steps) → Order → Composite → Layers to IMAGE/MASK → Preview → Edit → Save, plus
the errors users see for bad input, and stopping on interrupt.
"""
import json
from importlib import import_module

import pytest
import torch

FRAMES, HEIGHT, WIDTH = 6, 48, 64


def node(pack, name):
    return pack.NODE_CLASS_MAPPINGS[name]()


@pytest.fixture(scope="module")
def scene(pack):
    with torch.inference_mode():
        return node(pack, "GenOmnimatteDemoScene").generate(0, 2, FRAMES, WIDTH, HEIGHT, "static")


@pytest.fixture(scope="module")
def fitted(pack, scene):
    video, masks, depth, fps, _ = scene
    with torch.inference_mode():
        background, solos = node(pack, "GenOmnimatteCleanPlate").clean_plate(video, masks, 5, plate_rounds=0)
        layers, = node(pack, "GenOmnimatteFitLayers").fit(solos, background, masks, "preview", 2, 0, fps,
                                                          layer_names="a,b")
    return background, solos, layers


def test_demo_scene_outputs_comfy_layouts(scene):
    video, masks, depth, fps, background = scene
    assert video.shape == (FRAMES, HEIGHT, WIDTH, 3) and background.shape == video.shape
    assert masks.shape == (2 * FRAMES, HEIGHT, WIDTH)  # two objects, object after object
    assert depth.shape == video.shape and fps == 24.0
    assert 0 < float(masks.mean()) < 0.5 and video.min() >= 0 and video.max() <= 1
    # each object's masks change over time (the objects move)
    assert not torch.equal(masks[0], masks[FRAMES - 1])


def test_clean_plate_recovers_the_static_background(pack, scene, fitted):
    video, masks, _, _, true_background = scene
    background, solos, _ = fitted
    assert background.shape == video.shape and solos.shape == (2 * FRAMES, HEIGHT, WIDTH, 3)
    error = (background - true_background).abs().mean()
    assert error < 0.5 * (video - true_background).abs().mean()


def test_clean_plate_rounds_zero_is_the_plain_plate_and_rounds_report_progress(pack):
    # plate_rounds = 0: the plain temporal-median plate and solos; each round fits the layers once more (here a few
    # steps) and takes the other objects' effects out of each solo, with one progress bar over every round's fit.
    t, h, w = 8, 48, 80
    plain = import_module(f"{pack.__name__}.omnimatte_core.clean_plate")
    truth = import_module(f"{pack.__name__}.omnimatte_core.synthetic").make_scene(
        seed=0, num_objects=2, frames=t, height=h, width=w)
    comfy = import_module(f"{pack.__name__}.nodes.comfy_integration")
    video = truth.composite.permute(0, 2, 3, 1).contiguous()  # IMAGE [T,H,W,3]
    masks = truth.masks[:, :, 0].flatten(0, 1).float()  # MASK, object after object
    clean_plate = node(pack, "GenOmnimatteCleanPlate").clean_plate
    steps = []
    original = comfy.Progress.__call__

    def spy(self, step, total=None, preview=None):
        steps.append((step, total, self.total))
        return original(self, step, total, preview)

    comfy.Progress.__call__ = spy
    try:
        with torch.inference_mode():
            background_0, solos_0 = clean_plate(video, masks, 11, plate_rounds=0)
            assert steps == []  # no fit
            background_1, solos_1 = clean_plate(video, masks, 11, plate_rounds=1, plate_fit_steps=3)
            assert steps == [(1, 3, 3), (2, 3, 3), (3, 3, 3)]
            steps.clear()
            clean_plate(video, masks, 11, plate_rounds=2, plate_fit_steps=2)
            assert [s for s, _, _ in steps] == [1, 2, 3, 4] and {total for _, total, _ in steps} == {4}
            comfy.request_interrupt()
            with pytest.raises(comfy.Interrupted):
                clean_plate(video, masks, 11, plate_rounds=1, plate_fit_steps=50)
    finally:
        comfy.Progress.__call__ = original
        comfy.request_interrupt(False)

    plate = plain.estimate_clean_plate(truth.composite, truth.masks, dilate=11)
    expected_solos = plain.solo_videos(truth.composite, truth.masks, plate, dilate=21)
    assert torch.equal(background_0, plate.background.permute(0, 2, 3, 1))
    assert torch.equal(solos_0, expected_solos.flatten(0, 1).permute(0, 2, 3, 1))
    assert background_1.shape == background_0.shape == video.shape
    assert solos_1.shape == solos_0.shape == (2 * t, h, w, 3)
    assert 0 <= float(solos_1.min()) and float(solos_1.max()) <= 1
    assert not torch.equal(solos_1, solos_0)  # the round changed the solos
    own = masks.bool()  # each object's own pixels are never touched
    assert torch.equal(solos_1[own], video.repeat(2, 1, 1, 1)[own])


def test_fit_under_inference_mode_gives_layers(fitted):
    _, _, layers = fitted
    assert layers.rgb.shape == (2, FRAMES, 3, HEIGHT, WIDTH) and layers.alpha.shape == (2, FRAMES, 1, HEIGHT, WIDTH)
    assert layers.names == ["a", "b"] and layers.fps == 24.0
    assert not layers.alpha.is_inference()  # usable by later nodes that need autograd
    assert layers.masks.shape == layers.alpha.shape


def test_fit_reports_progress_with_previews_and_stops_on_interrupt(pack, scene, fitted):
    video, masks, _, fps, _ = scene
    background, solos, _ = fitted
    comfy = import_module(f"{pack.__name__}.nodes.comfy_integration")
    calls = []
    original = comfy.Progress.__call__

    def spy(self, step, total=None, preview=None):
        calls.append((step, preview is not None))
        if step == 2:
            comfy.request_interrupt()
        return original(self, step, total, preview)

    comfy.Progress.__call__ = spy
    try:
        with torch.inference_mode(), pytest.raises(comfy.Interrupted):
            node(pack, "GenOmnimatteFitLayers").fit(solos, background, masks, "preview", 50, 0, fps)
    finally:
        comfy.Progress.__call__ = original
        comfy.request_interrupt(False)
    assert [c[0] for c in calls] == [1, 2]  # stopped at the step where the request came
    assert calls[0][1]  # step 1 carried a preview image


def _preview_steps(comfy, run):
    """The steps at which a node's progress reports carried a preview, and the total it reported."""
    seen = []
    original = comfy.Progress.__call__

    def spy(self, step, total=None, preview=None):
        seen.append((step, total, preview is not None))
        return original(self, step, total, preview)

    comfy.Progress.__call__ = spy
    try:
        run()
    finally:
        comfy.Progress.__call__ = original
    return [step for step, _, shown in seen if shown], seen[-1][1]


def test_fit_previews_refresh_at_least_every_tenth_of_the_steps(pack, scene, fitted):
    # The presets refresh every 50 steps (25 % of the default's 200, half of the preview's 100): the nodes ask for
    # at least one preview per 10 % of their steps.
    video, masks, _, fps, _ = scene
    background, solos, layers = fitted
    comfy = import_module(f"{pack.__name__}.nodes.comfy_integration")
    with torch.inference_mode():
        video_hr, masks_hr, *_ = node(pack, "GenOmnimatteDemoScene").generate(0, 2, FRAMES, 2 * WIDTH, 2 * HEIGHT,
                                                                               "static")
        runs = {
            "fit": lambda: node(pack, "GenOmnimatteFitLayers").fit(solos, background, masks, "preview", 30, 0, fps),
            "upscale": lambda: node(pack, "GenOmnimatteUpscaleLayers").upscale(
                layers, solos, video_hr, masks_hr, "bicubic", True, "preview", 20, 0),
        }
        for name, run in runs.items():
            shown, total = _preview_steps(comfy, run)
            assert total in (30, 20)
            gaps = [b - a for a, b in zip([0, *shown], [*shown, total])]
            assert max(gaps) <= total // 10, (name, shown)


def test_order_composite_and_convert(pack, scene, fitted):
    video, masks, depth, _, _ = scene
    _, _, layers = fitted
    with torch.inference_mode():
        ordered, first = node(pack, "GenOmnimatteOrderLayersByDepth").order(layers, "larger is farther", 1, 0.0, "",
                                                                           depth=depth)
        manual, first_manual = node(pack, "GenOmnimatteOrderLayersByDepth").order(layers, "larger is farther", 1, 0.0,
                                                                                 "1,0", depth=depth)
        composite, opacity, transferred = node(pack, "GenOmnimatteCompositeLayers").composite(
            ordered, True, 0.98, video=video)
        plain, _, _ = node(pack, "GenOmnimatteCompositeLayers").composite(ordered, False, 0.98)
        rgba, alpha, rgb, background = node(pack, "GenOmnimatteLayersToImage").convert(ordered, -1)
        one, one_alpha, _, _ = node(pack, "GenOmnimatteLayersToImage").convert(ordered, 1)
        preview, = node(pack, "GenOmnimattePreviewLayers").preview(ordered, 8, True)
    scene_module = import_module(f"{pack.__name__}.omnimatte_core.synthetic")
    truth = scene_module.make_scene(seed=0, num_objects=2, frames=FRAMES, height=HEIGHT, width=WIDTH)
    assert torch.equal(ordered.order, truth.order)  # Demo Scene's depth gives the true order
    assert first == ", ".join(ordered.names[int(i)] for i in truth.order[0])
    assert manual.order[:, 0].eq(1).all() and first_manual == "b, a"
    assert composite.shape == video.shape and opacity.shape == (FRAMES, HEIGHT, WIDTH)
    # detail transfer brings the composite closer to the input than plain compositing
    assert (composite - video).abs().mean() <= (plain - video).abs().mean()
    assert rgba.shape == (2 * FRAMES, HEIGHT, WIDTH, 4) and alpha.shape == (2 * FRAMES, HEIGHT, WIDTH)
    assert torch.equal(rgba[..., 3], alpha) and torch.equal(rgba[..., :3], rgb)
    assert torch.allclose(alpha[:FRAMES], ordered.alpha[0, :, 0])  # MASK 1 = opaque, layer 0 first
    assert torch.equal(one_alpha, alpha[FRAMES:]) and background.shape == video.shape
    assert preview.shape == (FRAMES, HEIGHT, 3 * WIDTH, 3)


def test_edit_layers_drop_retime_fade_new_background(pack, fitted):
    _, _, layers = fitted
    new_background = torch.zeros(1, 20, 30, 3)
    new_background[..., 2] = 1.0  # one blue still image, another size
    with torch.inference_mode():
        edited, = node(pack, "GenOmnimatteEditLayers").edit(layers, "b", "", "0", 0.0, 1.0, 0, 0, 0.5,
                                                            new_background=new_background)
        shifted, = node(pack, "GenOmnimatteEditLayers").edit(layers, "", "1,0", "a", 2.0, 1.0, 0, 0, 1.0)
    assert edited.num_layers == 1 and edited.names == ["a"]
    assert torch.allclose(edited.alpha[0], 0.5 * layers.alpha[0], atol=1e-6)
    assert torch.allclose(edited.background[:, 2], torch.ones(FRAMES, HEIGHT, WIDTH), atol=1e-3)
    assert shifted.order[:, 0].eq(1).all()
    assert torch.allclose(shifted.alpha[0, 2:], layers.alpha[0, :-2], atol=1e-5)
    assert float(shifted.alpha[0, :2].max()) == 0.0  # shifted in: transparent


def test_save_layers_writes_a_new_run_folder_each_time(pack, fitted, tmp_path, monkeypatch):
    _, _, layers = fitted
    monkeypatch.setenv("COMFYUI_OUTPUT_DIR", str(tmp_path))
    save = node(pack, "GenOmnimatteSaveLayers")
    with torch.inference_mode():
        first = save.save(layers, "run", True, "none", False)
        second = save.save(layers, "run", True, "none", False)
    folders = [first["result"][0], second["result"][0]]
    assert folders[0] != folders[1] and all(f.startswith(str(tmp_path)) for f in folders)
    manifest = json.loads((tmp_path / "run_0001" / "manifest.json").read_text())
    assert [layer["name"] for layer in manifest["layers"]] == ["a", "b"] and manifest["frames"] == FRAMES
    assert len(list((tmp_path / "run_0001" / "layers").rglob("*.png"))) == 2 * FRAMES
    images = first["ui"]["images"]
    assert [(tmp_path / i["subfolder"] / i["filename"]).is_file() for i in images] == [True, True]


def test_combine_and_label_map_masks(pack, scene):
    video, masks, *_ = scene
    combine = node(pack, "GenOmnimatteCombineObjectMasks")
    combined, count = combine.combine(FRAMES, mask_1=masks[:FRAMES], mask_2=masks[FRAMES:])
    assert count == 2 and torch.equal(combined, masks)
    # a label map with values 1 and 2 (0..255 scale) splits back into the same masks
    label = (masks[:FRAMES] * 1 + masks[FRAMES:] * 2 * (masks[:FRAMES] < 0.5)) / 255.0
    label_image = label.unsqueeze(-1).expand(-1, -1, -1, 3)
    split, n, values = node(pack, "GenOmnimatteMasksFromLabelMap").split(label_image, "auto", 0)
    assert (n, values) == (2, "1,2")
    assert torch.equal(split[:FRAMES], masks[:FRAMES])
    assert torch.equal(split[FRAMES:], masks[FRAMES:] * (masks[:FRAMES] < 0.5))
    reordered, _, values = node(pack, "GenOmnimatteMasksFromLabelMap").split(label_image, "2,1", 0)
    assert values == "2,1" and torch.equal(reordered[:FRAMES], split[FRAMES:])


def test_build_trimasks_with_preview(pack, scene):
    video, masks, *_ = scene
    jobs, preview, names = node(pack, "GenOmnimatteBuildTrimasks").build(video, masks, 3, "background + solos")
    assert names == "background, solo_0, solo_1" and preview.shape == (3 * FRAMES, HEIGHT, WIDTH, 3)
    assert set(torch.unique(preview).tolist()) <= {0.0, 0.5, 1.0}
    assert bool((jobs.trimasks[0][masks[:FRAMES] > 0.5] == 1.0).all())  # background job removes object 0
    only, _, names = node(pack, "GenOmnimatteBuildTrimasks").build(video, masks[:FRAMES], 3, "background only")
    assert names == "background" and only.trimasks.shape[0] == 1


@pytest.mark.parametrize("case", ["frames", "size", "objects", "empty", "none"])
def test_bad_masks_say_what_to_fix(pack, scene, fitted, case):
    video, masks, _, fps, _ = scene
    background, solos, _ = fitted
    if case == "none":
        with pytest.raises(ValueError, match="connect at least mask_1"):
            node(pack, "GenOmnimatteCombineObjectMasks").combine(FRAMES)
        return
    bad = {"frames": masks[:-1], "size": masks[:, :-2], "objects": masks[:FRAMES],
           "empty": torch.cat([masks[:FRAMES], torch.zeros_like(masks[:FRAMES])])}[case]
    expected = {"frames": "not a whole number of objects", "size": "resize the masks",
                "objects": "one mask per solo video", "empty": "empty in every frame"}[case]
    with pytest.raises(ValueError, match=expected):
        node(pack, "GenOmnimatteFitLayers").fit(solos, background, bad, "preview", 1, 0, fps)
    if case in ("frames", "size", "empty"):
        with pytest.raises(ValueError, match=expected):
            node(pack, "GenOmnimatteCleanPlate").clean_plate(video, bad, 5)
        with pytest.raises(ValueError, match=expected):
            node(pack, "GenOmnimatteBuildTrimasks").build(video, bad, 3, "background + solos")


def test_load_casper_model_errors_before_loading(pack, tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYUI_MODELS_DIR", str(tmp_path))
    load = node(pack, "GenOmnimatteLoadCasperModel")
    base = tmp_path / "CogVideoX_Fun" / "CogVideoX-Fun-V1.5-5b-InP"
    (base / "transformer").mkdir(parents=True)
    (tmp_path / "casper").mkdir()
    (tmp_path / "casper" / "casper.safetensors").write_bytes(b"")
    spec = load.INPUT_TYPES()["required"]
    assert spec["base_model"][0] == ["CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP"]
    assert spec["casper_weights"][0] == ["casper.safetensors"]
    with pytest.raises(FileNotFoundError, match="lacks the subfolder"):
        load.load("CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP", "casper.safetensors", "bf16", "gpu", "auto", True)
    with pytest.raises(FileNotFoundError, match="no folder 'missing'"):
        load.load("CogVideoX_Fun/missing", "casper.safetensors", "bf16", "gpu", "auto", True)
    with pytest.raises(ValueError, match="base_model must be"):
        load.load("../../etc", "casper.safetensors", "bf16", "gpu", "auto", True)
    with pytest.raises(FileNotFoundError, match="(?s)other.safetensors.* is not in .*the Casper weights"):
        load.load("CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP", "other.safetensors", "bf16", "gpu", "auto", True)


MODEL_HELP = ("alibaba-pai/CogVideoX-Fun-V1.5-5b-InP", "ComfyUI/models/CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP/",
              "ComfyUI/models/casper/casper_cogvideox_fun_v1.5.safetensors", "gen-omnimatte/gen-omnimatte-public")


@pytest.mark.parametrize("choice", ["placeholders", "saved names"])
def test_missing_models_name_both_files_where_they_go_and_their_ids(pack, tmp_path, monkeypatch, choice):
    monkeypatch.setenv("COMFYUI_MODELS_DIR", str(tmp_path))
    load = node(pack, "GenOmnimatteLoadCasperModel")
    spec = load.INPUT_TYPES()["required"]
    if choice == "placeholders":  # an install without models: each dropdown holds only its placeholder
        base, weights = spec["base_model"][0][0], spec["casper_weights"][0][0]
        assert len(spec["base_model"][0]) == len(spec["casper_weights"][0]) == 1
    else:  # a shared workflow names files this machine lacks
        base, weights = "CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP", "casper_cogvideox_fun_v1.5.safetensors"
    with pytest.raises(FileNotFoundError) as raised:
        load.load(base, weights, "bf16", "gpu", "auto", True)
    message = str(raised.value)
    for text in MODEL_HELP:
        assert text in message, (text, message)
    assert str(tmp_path / "CogVideoX_Fun") in message  # where it looked


def test_upscale_layers_to_full_resolution(pack, fitted):
    background, solos, layers = fitted
    with torch.inference_mode():
        video_hr, masks_hr, *_ = node(pack, "GenOmnimatteDemoScene").generate(0, 2, FRAMES, 2 * WIDTH, 2 * HEIGHT,
                                                                               "static")
        full, = node(pack, "GenOmnimatteUpscaleLayers").upscale(layers, solos, video_hr, masks_hr, "bicubic", True,
                                                                "preview", 1, 0)
        with pytest.raises(ValueError, match="connect the solos the base layers"):
            node(pack, "GenOmnimatteUpscaleLayers").upscale(layers, solos[:FRAMES], video_hr, masks_hr, "bicubic",
                                                            True, "preview", 1, 0)
    assert full.rgb.shape == (2, FRAMES, 3, 2 * HEIGHT, 2 * WIDTH) and full.size == (2 * HEIGHT, 2 * WIDTH)
    assert full.background.shape == (FRAMES, 3, 2 * HEIGHT, 2 * WIDTH) and full.names == layers.names
    assert full.masks.shape == full.alpha.shape
