"""The README's main command, `python -m casper_core.decompose`, on a tiny scene and on a user's own files."""
import io
import json
import math
import os

import cv2
import numpy as np
import pytest

from casper_core import decompose
from omnimatte_core.synthetic import make_scene

TINY = dict(num_objects=2, frames=6, height=48, width=80, effects=("shadow", "reflection"))


def _run(argv, monkeypatch):
    monkeypatch.setattr(decompose, "DEMO_SCENE", TINY)
    parser = decompose.build_parser()
    args = parser.parse_args(argv)
    decompose.check_args(parser, args)
    stream = io.StringIO()
    return decompose.run(args, stream=stream), stream.getvalue()


def test_synthetic_demo_end_to_end(tmp_path, monkeypatch, capsys):
    summary, printed = _run(["--out", str(tmp_path), "--steps", "4", "--formats", "png", "preview",
                             "--figure", str(tmp_path / "figure.png")], monkeypatch)
    folder = tmp_path / "omnimatte_0001"
    assert summary["folder"] == str(folder)
    # every stage ran, with a progress bar and a time
    for stage in ("input", "clean plate", "fit", "order", "composite", "detail transfer", "export", "figure"):
        assert stage in summary["seconds"] and summary["seconds"][stage] >= 0
        assert f"  {stage}" in printed
    assert "#" * 30 in printed and "Time per stage" in printed and str(folder) in printed
    # quality against ground truth: present, finite and sane even after 4 steps
    quality = summary["quality"]
    assert len(quality["layers"]) == 2
    for layer in quality["layers"]:
        assert math.isfinite(layer["composite_psnr"]) and layer["composite_psnr"] > 10
        assert 0 <= layer["alpha_mae"] < 0.5
    assert quality["clean_plate_psnr"] > 20  # static camera: the masked temporal estimate is close
    assert quality["order_accuracy"] == 1.0  # order from the scene's depth video
    recon = summary["reconstruction_psnr"]
    assert math.isfinite(recon["fit"]) and recon["after_detail_transfer"] > 20
    assert 0 < summary["detail_transfer_fraction"] <= 1
    assert "fit → after detail transfer" in printed
    assert len(quality["layers_after_detail_transfer"]) == 2
    assert summary["settings"]["opaque_inside_masks"] is True
    assert summary["settings"]["removal"]["plate_rounds"] == 1  # effect-aware solos by default (--plate-rounds)
    # the export: manifest, per-layer PNGs, previews, the overview picture
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["frames"] == 6 and (manifest["height"], manifest["width"]) == (48, 80)
    assert len(manifest["layers"]) == 2 and manifest["settings"]["steps"] == 4
    assert len(manifest["files"]["png"]) == 3 * 6 and len(manifest["files"]["preview"]) == 3
    for path in ("demo_layers.png", "summary.json"):
        assert (folder / path).is_file()
    figure = cv2.imread(str(tmp_path / "figure.png"))
    assert figure.shape[1] > 5 * 80 and (tmp_path / "figure.png").stat().st_size < 300_000
    # a second run never overwrites the first; the figure path is refused before any work, not replaced
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        _run(["--out", str(tmp_path), "--steps", "1", "--formats", "png", "--figure", str(tmp_path / "figure.png")],
             monkeypatch)
    assert exit_info.value.code == 2 and "figure.png" in capsys.readouterr().err
    assert not (tmp_path / "omnimatte_0002").exists()


def test_demo_on_user_files(tmp_path, monkeypatch):
    scene = make_scene(seed=3, **TINY)
    frames = tmp_path / "video"
    frames.mkdir()
    for t, frame in enumerate(scene.composite):
        rgb = (frame.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        cv2.imwrite(str(frames / f"{t:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    labels = tmp_path / "labels"
    labels.mkdir()
    for t in range(scene.masks.shape[1]):
        label = np.zeros(scene.masks.shape[-2:], np.uint8)
        for i in range(scene.masks.shape[0]):
            label[scene.masks[i, t, 0].numpy() > 0.5] = 100 * (i + 1)
        cv2.imwrite(str(labels / f"{t:03d}.png"), label)
    summary, printed = _run(["--video", str(frames), "--label-map", str(labels), "--out", str(tmp_path / "out"),
                             "--steps", "2", "--formats", "png", "--prefix", "mine"], monkeypatch)
    assert "quality" not in summary  # no ground truth for a user's files
    manifest = json.loads((tmp_path / "out" / "mine_0001" / "manifest.json").read_text())
    assert [layer["name"] for layer in manifest["layers"]] == ["label_100", "label_200"]
    assert manifest["source"]["label_map"] == str(labels) and manifest["settings"]["order"] == "mask position"
    assert summary["reconstruction_psnr"]["after_detail_transfer"] > 20


@pytest.mark.parametrize("argv", [
    ["--masks", "m.mp4"],                                  # masks without a video
    ["--video", "v.mp4"],                                  # a video without masks
    ["--video", "v.mp4", "--masks", "m.mp4", "--label-map", "l.mp4"],
    ["--prefix", "../up"],                                 # path traversal
    ["--steps", "0"],
    ["--plate-rounds", "-1"],
    ["--casper-base", "base"],                             # weights missing
])
def test_bad_arguments_exit_before_work(argv, capsys):
    parser = decompose.build_parser()
    with pytest.raises(SystemExit) as exit_info:
        decompose.check_args(parser, parser.parse_args(argv))
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_mismatched_mask_file_is_a_clear_error(tmp_path, monkeypatch):
    scene = make_scene(seed=0, **TINY)
    video = tmp_path / "video"
    video.mkdir()
    mask = tmp_path / "mask"
    mask.mkdir()
    for t in range(6):
        cv2.imwrite(str(video / f"{t}.png"), np.zeros((48, 80, 3), np.uint8))
        if t < 5:  # one frame short
            cv2.imwrite(str(mask / f"{t}.png"), (scene.masks[0, t, 0].numpy() * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="5 frames but the video has 6"):
        _run(["--video", str(video), "--masks", str(mask), "--out", str(tmp_path / "out")], monkeypatch)
    assert not (tmp_path / "out").exists()


def test_demo_with_casper_weights_uses_casper(tmp_path, monkeypatch):
    """--casper-base/--casper-weights: the removal comes from Casper (a tiny random release in the real file format)."""
    testing = pytest.importorskip("casper_core.testing")
    release = testing.write_tiny_release(tmp_path / "models", seed=0)
    scene = make_scene(seed=2, num_objects=2, frames=5, height=32, width=48, effects=("shadow", "reflection"))
    frames, masks = tmp_path / "video", [tmp_path / "m0", tmp_path / "m1"]
    frames.mkdir()
    for folder in masks:
        folder.mkdir()
    for t in range(5):
        rgb = (scene.composite[t].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        cv2.imwrite(str(frames / f"{t}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        for i, folder in enumerate(masks):
            cv2.imwrite(str(folder / f"{t}.png"), (scene.masks[i, t, 0].numpy() * 255).astype(np.uint8))
    summary, printed = _run(["--video", str(frames), "--masks", *map(str, masks), "--out", str(tmp_path / "out"),
                             "--casper-base", str(release.base_dir), "--casper-weights", str(release.casper_weights),
                             "--casper-steps", "2", "--casper-size", "32x48", "--casper-dtype", "fp32",
                             "--steps", "2", "--formats", "png"], monkeypatch)
    assert "casper" in summary["seconds"] and "clean plate" not in summary["seconds"]
    removal = summary["settings"]["removal"]
    assert removal["method"] == "casper" and removal["steps"] == 2 and removal["size"] == [32, 48]
    manifest = json.loads((tmp_path / "out" / "omnimatte_0001" / "manifest.json").read_text())
    assert manifest["settings"]["removal"]["weights"] == str(release.casper_weights)
    assert len(manifest["layers"]) == 2 and manifest["frames"] == 5


def test_demo_full_resolution_path_and_depth_file(tmp_path, monkeypatch):
    """A video larger than --base-long-side: fit at the base size, then the full-resolution fit; order from a depth
    video given as files (metric: bright = far)."""
    scene = make_scene(seed=4, **TINY)
    folders = {name: tmp_path / name for name in ("video", "m0", "m1", "depth")}
    for folder in folders.values():
        folder.mkdir()
    depth = scene.depth / scene.depth.max()
    for t in range(6):
        rgb = (scene.composite[t].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        cv2.imwrite(str(folders["video"] / f"{t}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folders["depth"] / f"{t}.png"), (depth[t, 0].numpy() * 65535).astype(np.uint16))
        for i in range(2):
            cv2.imwrite(str(folders[f"m{i}"] / f"{t}.png"), (scene.masks[i, t, 0].numpy() * 255).astype(np.uint8))
    summary, printed = _run(["--video", str(folders["video"]), "--masks", str(folders["m0"]), str(folders["m1"]),
                             "--depth", str(folders["depth"]), "--depth-is-far", "--base-long-side", "40",
                             "--steps", "2", "--full-res-steps", "2", "--out", str(tmp_path / "out"),
                             "--formats", "png"], monkeypatch)
    assert "fit full-res" in summary["seconds"] and summary["settings"]["full_res"] is True
    assert summary["settings"]["base_size"] == [24, 40] and summary["settings"]["order"] == "depth"
    manifest = json.loads((tmp_path / "out" / "omnimatte_0001" / "manifest.json").read_text())
    assert (manifest["height"], manifest["width"]) == (48, 80)  # layers at the input's size
    names = ["m0", "m1"]
    expected = [[names[i] for i in row] for row in scene.order.tolist()]
    assert manifest["order_front_to_back"] == expected  # the depth files recover the true order


def _main_without_work(argv, monkeypatch, capsys):
    """``decompose.main(argv)`` with the pipeline replaced by a tripwire: the checks must stop it before any work."""
    def tripwire(args, stream=None):
        raise AssertionError("the pipeline started although an option was unusable")
    monkeypatch.setattr(decompose, "run", tripwire)
    with pytest.raises(SystemExit) as exit_info:
        decompose.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err  # one line, no usage text
    return err


def test_device_without_gpu_is_a_one_line_error(monkeypatch, capsys):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = _main_without_work(["--device", "cuda", "--steps", "1"], monkeypatch, capsys)
    assert "--device 'cuda'" in err and "no usable CUDA GPU" in err
    err = _main_without_work(["--device", "gpu0"], monkeypatch, capsys)
    assert "not a torch device" in err


def test_output_paths_are_checked_before_the_fit(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    assert "is a file" in _main_without_work(["--out", str(blocker)], monkeypatch, capsys)
    assert "is not a folder" in _main_without_work(["--out", str(blocker / "sub")], monkeypatch, capsys)
    figure = tmp_path / "figure.png"
    figure.write_bytes(b"")
    err = _main_without_work(["--out", str(tmp_path), "--figure", str(figure)], monkeypatch, capsys)
    assert "figure.png" in err and "exists" in err
    err = _main_without_work(["--out", str(tmp_path), "--figure", str(tmp_path / "overview")], monkeypatch, capsys)
    assert "picture file name" in err  # no extension: OpenCV could not write it at the end
    err = _main_without_work(["--out", str(tmp_path), "--figure", str(blocker / "f.png")], monkeypatch, capsys)
    assert "--figure" in err and "is a file" in err
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            assert "not writable" in _main_without_work(["--out", str(locked / "runs")], monkeypatch, capsys)
        finally:
            locked.chmod(0o700)
    assert blocker.read_text() == "keep me" and not (tmp_path / "runs").exists()


def test_missing_codec_is_refused_before_the_fit(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(decompose.export, "available_formats",
                        lambda: {"png": True, "prores": False, "webm": True, "preview": True})
    err = _main_without_work(["--out", str(tmp_path), "--formats", "png", "prores"], monkeypatch, capsys)
    assert "--formats prores" in err and "cannot write" in err


def test_depth_of_another_size_is_refused_before_the_fit(tmp_path, monkeypatch, capsys):
    folders = {name: tmp_path / name for name in ("video", "mask", "depth")}
    for folder in folders.values():
        folder.mkdir()
    for t in range(3):
        cv2.imwrite(str(folders["video"] / f"{t}.png"), np.zeros((48, 80, 3), np.uint8))
        cv2.imwrite(str(folders["mask"] / f"{t}.png"), np.full((48, 80), 255, np.uint8))
        cv2.imwrite(str(folders["depth"] / f"{t}.png"), np.zeros((24, 40), np.uint8))
    err = _main_without_work(["--video", str(folders["video"]), "--masks", str(folders["mask"]),
                              "--depth", str(folders["depth"]), "--out", str(tmp_path / "out")], monkeypatch, capsys)
    assert "--depth is 24×40" in err and "--video is 48×80" in err


def test_unexpected_errors_are_one_line_unless_asked(tmp_path, monkeypatch, capsys):
    def broken(args, stream=None):
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")
    monkeypatch.setattr(decompose, "run", broken)
    assert decompose.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB" in err
    with pytest.raises(RuntimeError, match="out of memory"):
        decompose.main(["--out", str(tmp_path), "--traceback"])


def test_summary_json_is_strict_json_with_null_for_non_finite_numbers(tmp_path, monkeypatch):
    # An exact reconstruction has an infinite PSNR; a degenerate metric can be NaN. Both become null in the file.
    values = iter([float("inf"), float("nan")])
    monkeypatch.setattr(decompose.metrics, "psnr", lambda *a, **k: next(values, 30.0))
    summary, _ = _run(["--out", str(tmp_path), "--steps", "2", "--formats", "png", "preview"], monkeypatch)
    assert math.isinf(summary["reconstruction_psnr"]["fit"])  # the returned summary keeps the numbers

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    text = (tmp_path / "omnimatte_0001" / "summary.json").read_text()
    written = json.loads(text, parse_constant=refuse)
    assert written["reconstruction_psnr"] == {"fit": None, "after_detail_transfer": None}


class _LoaderCalled(Exception):
    pass


def test_speed_options_reach_the_casper_loader(monkeypatch):
    from casper_core import wan_loading
    from casper_core.pipeline import CasperPipeline

    calls = []

    def record(*args, **kwargs):
        calls.append(kwargs)
        raise _LoaderCalled

    monkeypatch.setattr(CasperPipeline, "from_pretrained", staticmethod(record))
    monkeypatch.setattr(wan_loading, "is_wan_base_model", lambda folder: False)
    argv = ["--casper-base", "base", "--casper-weights", "w.safetensors", "--compile", "--fp8-compute",
            "--attention-backend", "sage"]
    args = decompose.build_parser().parse_args(argv)
    with pytest.raises(_LoaderCalled):
        decompose._casper_removal(None, None, args, None)
    assert {k: calls[0][k] for k in ("compile", "fp8_compute", "attention_backend")} == \
        {"compile": True, "fp8_compute": True, "attention_backend": "sage"}
    # a Wan2.1-Fun base model has none of these options: refused by name instead of silently ignored
    monkeypatch.setattr(wan_loading, "is_wan_base_model", lambda folder: True)
    with pytest.raises(ValueError, match="--compile and --fp8-compute are options of the CogVideoX-Fun base model"):
        decompose._casper_removal(None, None, args, None)
