"""Export of layers (omnimatte_core.export): round trips, manifest, never overwriting, safe names."""
import errno
import json
import math
import os

import av
import cv2
import numpy as np
import pytest
import torch

from omnimatte_core.export import available_formats, check_prefix, export_layers
from omnimatte_core.layers import Layers

N, T, H, W = 2, 5, 31, 46  # odd sizes on purpose: 4:2:0 previews must pad, PNGs and alpha videos must not


@pytest.fixture
def layers():
    g = torch.Generator().manual_seed(0)
    alpha = torch.zeros(N, T, 1, H, W)
    alpha[0, :, :, 4:20, 5:30] = 1.0
    alpha[0, :, :, 20:28, 5:30] = 0.5  # a translucent "shadow"
    alpha[1] = torch.linspace(0, 1, W).expand(T, 1, H, W)
    # smooth colour (what video codecs are built for), different per layer, channel and frame
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    phase = torch.rand(N, T, 3, 1, 1, generator=g)
    rgb = 0.5 + 0.4 * torch.sin(6 * (yy + 0.7 * xx) + 6 * phase)
    return Layers(rgb=rgb, alpha=alpha,
                  background=torch.rand(T, 3, H, W, generator=g),
                  order=torch.tensor([[0, 1], [0, 1], [1, 0], [1, 0], [1, 0]]), names=["person", "dog 2"], fps=25.0)


def _decode(path, decoder=None):
    """All frames of the first video stream as RGBA uint8 [T,H,W,4], plus the decoded pixel format."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if decoder is None:
            frames = list(container.decode(stream))
        else:  # VP9 alpha needs libvpx's decoder (FFmpeg's native vp9 drops the alpha side data)
            context = av.CodecContext.create(decoder, "r")
            frames = [f for p in container.demux(stream) if p.size for f in context.decode(p)]
    return np.stack([f.to_ndarray(format="rgba") for f in frames]), frames[0].format.name


def test_png_round_trip_and_manifest(tmp_path, layers):
    result = export_layers(layers, tmp_path, prefix="shot_A", formats=["png"], source="clip.mp4",
                           settings={"preset": "preview", "steps": 10})
    assert result.folder == tmp_path / "shot_A_0001"
    manifest = json.loads(result.manifest.read_text())
    assert (manifest["frames"], manifest["width"], manifest["height"], manifest["fps"]) == (T, W, H, 25.0)
    assert [entry["name"] for entry in manifest["layers"]] == ["person", "dog 2"]
    assert manifest["order_front_to_back"][0] == ["person", "dog 2"]
    assert manifest["order_front_to_back"][4] == ["dog 2", "person"]
    assert manifest["source"] == "clip.mp4" and manifest["settings"]["steps"] == 10
    for i in range(N):
        pattern = manifest["layers"][i]["files"]["png"]
        for t in range(T):
            bgra = cv2.imread(str(result.folder / (pattern % t)), cv2.IMREAD_UNCHANGED)
            assert bgra.shape == (H, W, 4) and bgra.dtype == np.uint8
            rgba = torch.from_numpy(cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)).permute(2, 0, 1)
            expected = torch.cat([layers.rgb[i, t], layers.alpha[i, t]]).mul(255).round().to(torch.uint8)
            expected[:, expected[3] == 0] = 0  # colour 0 where the layer is empty
            assert torch.equal(rgba, expected)  # straight alpha, exactly the quantised input
    background = cv2.imread(str(result.folder / (manifest["background"]["png"] % 3)))
    expected = layers.background[3].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(cv2.cvtColor(background, cv2.COLOR_BGR2RGB), expected)
    # every listed file exists, nothing else but the manifest is in the folder
    listed = {p for paths in manifest["files"].values() for p in paths}
    on_disk = {str(p.relative_to(result.folder)) for p in result.folder.rglob("*") if p.is_file()}
    assert on_disk == listed | {"manifest.json"}


@pytest.mark.parametrize("kind", ["prores", "webm", "preview"])
def test_video_round_trip(tmp_path, layers, kind):
    if not available_formats()[kind]:
        pytest.skip(f"this FFmpeg build cannot write {kind}")
    result = export_layers(layers, tmp_path, formats=[kind])
    manifest = json.loads(result.manifest.read_text())
    path = result.folder / manifest["layers"][0]["files"][kind]
    decoded, pix_fmt = _decode(path, decoder="libvpx-vp9" if kind == "webm" else None)
    assert decoded.shape[0] == T
    if kind == "preview":
        assert decoded.shape[1:3] == (H + H % 2, W + W % 2)  # padded to even for 4:2:0
        # the opaque part shows the layer, the transparent part the checkerboard (greys 0.4/0.6)
        corner = decoded[:, 0:3, 0:3, :3].astype(float) / 255
        assert np.all(np.abs(corner - 0.4) < 0.05) or np.all(np.abs(corner - 0.6) < 0.05)
        return
    assert decoded.shape[1:3] == (H, W)
    assert pix_fmt.startswith("yuva")  # an alpha plane came back
    alpha = torch.from_numpy(decoded[..., 3]).float() / 255
    truth = layers.alpha[0, :, 0]
    tolerance = 2 / 255 if kind == "prores" else 0.06  # ProRes alpha is lossless-ish; VP9 alpha is lossy
    assert (alpha - truth).abs().mean() < tolerance
    opaque = truth > 0.99
    rgb = torch.from_numpy(decoded[..., :3]).float().permute(0, 3, 1, 2) / 255
    err = (rgb - layers.rgb[0]).abs().mean(1)[opaque].mean()
    assert err < 0.03


def test_never_overwrites(tmp_path, layers):
    first = export_layers(layers, tmp_path, formats=["png"])
    before = {p: p.stat().st_mtime_ns for p in first.folder.rglob("*")}
    second = export_layers(layers, tmp_path, formats=["png"])
    assert second.folder.name == "omnimatte_0002" and first.folder.name == "omnimatte_0001"
    assert {p: p.stat().st_mtime_ns for p in first.folder.rglob("*")} == before
    # a file where the output folder should be is an error, and stays untouched
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    with pytest.raises(FileExistsError, match="taken"):
        export_layers(layers, blocker, formats=["png"])
    assert blocker.read_text() == "keep me"
    # no temporary folder is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["omnimatte_0001", "omnimatte_0002", "taken"]


def test_unwritable_folder(tmp_path, layers):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="file"):
        export_layers(layers, blocker / "sub", formats=["png"])
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(PermissionError, match="locked"):
                export_layers(layers, locked, formats=["png"])
        finally:
            locked.chmod(0o700)


def test_failure_leaves_nothing_half_written(tmp_path, layers):
    def interrupt(done, total):
        if done == 7:
            raise KeyboardInterrupt  # e.g. the user stops the run mid-export
    with pytest.raises(KeyboardInterrupt):
        export_layers(layers, tmp_path, formats=["png"], progress=interrupt)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("prefix", ["../evil", "/abs", "a/b", "..", ".hidden", "a\\b", "", "sp ace", "x" * 101])
def test_bad_prefix(tmp_path, layers, prefix):
    with pytest.raises(ValueError, match="prefix"):
        export_layers(layers, tmp_path, prefix=prefix)
    assert list(tmp_path.iterdir()) == []


def test_bad_layers(tmp_path, layers):
    class Mismatched:  # bypasses Layers' own validation, as a hand-built object might
        rgb, alpha, background = layers.rgb, layers.alpha[:1], layers.background
    with pytest.raises(ValueError, match="alpha"):
        export_layers(Mismatched(), tmp_path)

    class WrongMasks:
        rgb, alpha, background, masks = layers.rgb, layers.alpha, layers.background, layers.alpha[:1]
    with pytest.raises(ValueError, match="one mask per layer"):
        export_layers(WrongMasks(), tmp_path)
    with pytest.raises(ValueError, match="formats"):
        export_layers(layers, tmp_path, formats=["gif"])
    with pytest.raises(TypeError, match="layers"):
        export_layers(torch.zeros(3), tmp_path)
    assert check_prefix("shot-01_v2.final") == "shot-01_v2.final"
    assert list(tmp_path.iterdir()) == []


def _read_rgba(path):
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)


def test_empty_layer_areas_are_exactly_zero_in_png(tmp_path, layers):
    # a fitted alpha comes from a sigmoid: never exactly 0, e.g. 0.001..0.005 where the layer is empty
    alpha = torch.full((N, T, 1, H, W), 0.004)
    alpha[:, :, :, :10] = 0.001
    alpha[:, :, :, 15:25, 10:30] = 0.8  # the object
    alpha[:, :, :, 26:28, 10:30] = 0.02  # a faint but real veil (5/255) stays
    faint = Layers(rgb=layers.rgb, alpha=alpha, background=layers.background, names=["a", "b"], fps=25.0)
    result = export_layers(faint, tmp_path, formats=["png"])
    manifest = json.loads(result.manifest.read_text())
    rgba = _read_rgba(result.folder / (manifest["layers"][0]["files"]["png"] % 2))
    empty = np.ones((H, W), bool)
    empty[15:25, 10:30] = empty[26:28, 10:30] = False
    assert (rgba[empty] == 0).all()  # alpha and colour exactly 0 where the layer is empty
    assert (rgba[15:25, 10:30, 3] == 204).all() and (rgba[26:28, 10:30, 3] == 5).all()
    expected = layers.rgb[0, 2, :, 15:25, 10:30].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(rgba[15:25, 10:30, :3], expected)  # colour of the object untouched (straight alpha)


def test_manifest_is_strict_json(tmp_path, layers):
    settings = {"loss": float("nan"), "limits": [1.5, float("inf"), -float("inf")],
                "psnr": np.float32(31.5), "nested": {"x": (float("nan"), 2)}}
    result = export_layers(layers, tmp_path, formats=["png"], settings=settings,
                           source={"video": "clip.mp4", "score": float("nan")})

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")
    manifest = json.loads(result.manifest.read_text(), parse_constant=refuse)
    assert manifest["settings"] == {"loss": None, "limits": [1.5, None, None], "psnr": 31.5,
                                    "nested": {"x": [None, 2]}}
    assert manifest["source"] == {"video": "clip.mp4", "score": None}
    assert settings["loss"] != settings["loss"] and math.isinf(settings["limits"][1])  # the caller's dict untouched


def test_real_os_errors_are_not_hidden(tmp_path, layers, monkeypatch):
    # a failing rename (permission denied, read-only disk, ...) is not "no free run folder name"
    import omnimatte_core.export as export

    def denied(source, target):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(export.os, "rename", denied)
    with pytest.raises(PermissionError, match="omnimatte_0001.*Permission denied") as caught:
        export_layers(layers, tmp_path, formats=["png"])
    assert isinstance(caught.value.__cause__, PermissionError) and caught.value.errno == errno.EACCES
    assert list(tmp_path.iterdir()) == []  # the staging folder is removed

    # a run folder taken meanwhile (the rename finds it not empty) still moves on to the next number
    calls = []

    def taken_once(source, target):
        calls.append(os.path.basename(target))
        if len(calls) == 1:
            raise OSError(errno.ENOTEMPTY, "Directory not empty")
        return os.replace(source, target)
    monkeypatch.setattr(export.os, "rename", taken_once)
    result = export_layers(layers, tmp_path, formats=["png"])
    assert calls == ["omnimatte_0001", "omnimatte_0002"] and result.folder.name == "omnimatte_0002"
