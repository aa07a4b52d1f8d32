"""Reading videos, frame folders, mask videos and label maps (omnimatte_core.video_io)."""
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch

from omnimatte_core.video_io import find_label_values, read_label_map, read_masks, read_video, split_label_levels


def _write_png_folder(folder, frames_u8):
    folder.mkdir()
    # names sort wrongly as plain strings (frame_10 before frame_2): the reader must sort naturally
    for i, frame in enumerate(frames_u8):
        code = cv2.COLOR_RGB2BGR if frame.ndim == 3 else None
        cv2.imwrite(str(folder / f"frame_{i}.png"), cv2.cvtColor(frame, code) if code is not None else frame)
    return folder


def _write_video(path, frames_u8, fps=Fraction(25), codec="libx264", pix_fmt="yuv420p", options=None):
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames_u8.shape[1:3]
        stream.pix_fmt = pix_fmt
        stream.options = options or {"crf": "0"} if codec == "libx264" else options or {}
        for frame in frames_u8:
            rgb = frame if frame.ndim == 3 else np.repeat(frame[..., None], 3, 2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def frames_u8():
    rng = np.random.default_rng(0)
    return (rng.random((12, 32, 48, 3)) * 255).astype(np.uint8)


def test_png_folder_exact_and_natural_order(tmp_path, frames_u8):
    folder = _write_png_folder(tmp_path / "frames", frames_u8)
    video, fps = read_video(folder, fps=30)
    assert video.shape == (12, 3, 32, 48) and video.dtype == torch.float32
    assert fps == 30.0
    expected = torch.from_numpy(frames_u8).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(video, expected)  # PNG is lossless and frame 10 follows frame 9


def test_mp4_frames_and_fps(tmp_path):
    # smooth content: H.264 at crf 0 in yuv420p only loses chroma detail
    yy, xx = np.meshgrid(np.linspace(0, 1, 32), np.linspace(0, 1, 48), indexing="ij")
    frames = np.stack([np.stack([yy, xx, (yy + xx + t / 10) % 1], -1) for t in range(10)])
    frames_u8 = (frames * 255).astype(np.uint8)
    path = _write_video(tmp_path / "clip.mp4", frames_u8, fps=Fraction(24000, 1001))
    video, fps = read_video(path)
    assert video.shape == (10, 3, 32, 48)
    assert fps == pytest.approx(23.976, abs=1e-3)
    err = (video - torch.from_numpy(frames_u8).permute(0, 3, 1, 2).float() / 255).abs().mean()
    assert err < 0.03
    assert read_video(path, max_frames=4)[0].shape[0] == 4


def test_masks_binarised_and_stacked(tmp_path):
    masks = np.zeros((6, 20, 30), np.uint8)
    masks[:, 5:12, 4:10] = 200
    masks[:, 0, 0] = 100  # below 0.5 → background
    other = np.zeros_like(masks)
    other[:, 10:18, 20:28] = 255
    a = _write_png_folder(tmp_path / "a", masks)
    b = _write_video(tmp_path / "b.mp4", other)
    stack = read_masks([a, b], num_frames=6, size=(20, 30))
    assert stack.shape == (2, 6, 1, 20, 30)
    assert set(stack.unique().tolist()) == {0.0, 1.0}
    assert stack[0, :, 0, 5:12, 4:10].all() and stack[0].sum() == 6 * 7 * 6
    assert stack[1, :, 0, 10:18, 20:28].all() and stack[1].sum() == 6 * 8 * 8


def test_label_map_png_and_lossy_video(tmp_path):
    labels = np.zeros((5, 24, 40), np.uint8)
    labels[:, 2:10, 2:12] = 1
    labels[:, 12:22, 20:36] = 2
    masks, values = read_label_map(_write_png_folder(tmp_path / "labels", labels))
    assert values == [1, 2] and masks.shape == (2, 5, 1, 24, 40)
    assert torch.equal(masks[0, :, 0].bool(), torch.from_numpy(labels == 1))
    assert torch.equal(masks[1, :, 0].bool(), torch.from_numpy(labels == 2))

    # grey levels 80 and 160 through a lossy codec: found as histogram peaks, split back into two objects
    video_labels = np.where(labels == 1, 80, np.where(labels == 2, 160, 0)).astype(np.uint8)
    path = _write_video(tmp_path / "labels.mp4", video_labels, options={"crf": "23"})
    masks, values = read_label_map(path, num_frames=5, size=(24, 40))
    assert len(values) == 2 and abs(values[0] - 80) <= 4 and abs(values[1] - 160) <= 4
    for i, level in enumerate((1, 2)):
        truth = torch.from_numpy(labels == level)
        agree = (masks[i, :, 0].bool() == truth).float().mean()
        assert agree > 0.98


def test_bad_inputs(tmp_path, frames_u8):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image frames"):
        read_video(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a video"):
        read_video(tmp_path / "notes.txt")
    mask = np.zeros((12, 32, 48), np.uint8)
    mask[:, 4:8, 4:8] = 255
    folder = _write_png_folder(tmp_path / "m", mask)
    with pytest.raises(ValueError, match="frames but the video has 10"):
        read_masks([folder], num_frames=10)
    with pytest.raises(ValueError, match="expected the same size"):
        read_masks([folder], size=(64, 48))
    short = _write_png_folder(tmp_path / "short", mask[:5])
    with pytest.raises(ValueError, match="expected all masks to match"):
        read_masks([folder, short])
    with pytest.raises(ValueError, match="no object labels"):
        read_label_map(_write_png_folder(tmp_path / "zeros", np.zeros((3, 8, 8), np.uint8)))


def test_max_frames_applies_to_masks_and_label_maps(tmp_path):
    labels = np.zeros((8, 16, 16), np.uint8)
    labels[:, 2:6, 2:6] = 1
    folder = _write_png_folder(tmp_path / "labels", labels)
    assert read_masks([folder], num_frames=3, max_frames=3).shape == (1, 3, 1, 16, 16)
    masks, values = read_label_map(folder, num_frames=3, max_frames=3)
    assert masks.shape == (1, 3, 1, 16, 16) and values == [1]


def _label_scene(frames=12, height=120, width=200):
    """Three moving objects on a black background: an ellipse (100), a box (200) and a small 8×8 square (150)."""
    yy, xx = np.mgrid[:height, :width]
    labels = np.zeros((frames, height, width), np.uint8)
    for t in range(frames):
        labels[t][((yy - 60) ** 2 / 900 + (xx - 50 - t) ** 2 / 1000) < 1] = 100
        labels[t][(abs(yy - 72) < 30) & (abs(xx - 140 + t) < 25)] = 200
        labels[t][(abs(yy - 10) < 4) & (abs(xx - 100 - t) < 4)] = 150
    return labels


def _iou(mask, truth):
    mask, truth = mask.bool(), torch.as_tensor(truth)
    return float((mask & truth).sum() / (mask | truth).sum())


@pytest.mark.parametrize("crf", ["18", "28"])
def test_lossy_label_map_objects_and_coverage(tmp_path, crf):
    # An mp4 label map: the codec turns some black pixels into 1..3, smears each label over nearby levels and rings
    # at edges. Codec noise must not become objects, and each object's mask must cover its true area.
    labels = _label_scene()
    path = _write_video(tmp_path / "labels.mp4", labels, options={"crf": crf})
    decoded = read_video(path)[0][:, 0]
    levels = torch.round(decoded * 255).to(torch.uint8)
    assert len(levels.unique()) > 30 and bool(((levels > 0) & (levels < 16)).any())  # really lossy, noise near 0
    masks, values = read_label_map(path, num_frames=12, size=(120, 200))
    assert len(values) == 3 and masks.shape == (3, 12, 1, 120, 200)
    for value, mask, truth in zip(values, masks[:, :, 0], (100, 150, 200)):
        assert abs(value - truth) <= 4
        assert _iou(mask, labels == truth) > 0.9
    assert not bool((masks.sum(0) > 1).any())  # every pixel belongs to one object at most
    background = masks.sum(0)[:, 0] == 0
    assert _iou(background, labels == 0) > 0.98

    # listing some values keeps the others out of their masks (the box's smear stays the box's)
    only, chosen = read_label_map(path, values=[200, 100])
    assert chosen == [200, 100]
    assert _iou(only[0, :, 0], labels == 200) > 0.9 and _iou(only[1, :, 0], labels == 100) > 0.9
    assert not bool((only[0, :, 0].bool() & torch.from_numpy(labels == 150)).any())


def test_label_finder_lossless_dense_and_lossy_jpg(tmp_path):
    # lossless dense labels, one of them a 1-pixel line between two others: every level is an exact label
    labels = np.zeros((4, 30, 40), np.uint8)
    labels[:, 5:10, 5:30] = 1
    labels[:, 10:11, 5:30] = 2
    labels[:, 11:20, 5:30] = 3
    found = find_label_values(labels)
    assert (found.values, found.background, found.lossy) == ([1, 2, 3], 0, False)
    split = split_label_levels(labels)
    assert split.tolerance == 0
    for mask, level in zip(split.masks, (1, 2, 3)):
        assert torch.equal(mask, torch.from_numpy(labels == level))

    # a JPG folder is lossy too: the same finder copes with it
    scene = _label_scene(frames=4)
    folder = tmp_path / "jpg"
    folder.mkdir()
    for i, frame in enumerate(scene):
        cv2.imwrite(str(folder / f"{i}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 75])
    masks, values = read_label_map(folder)
    assert len(values) == 3
    for mask, truth in zip(masks[:, :, 0], (100, 150, 200)):
        assert _iou(mask, scene == truth) > 0.9


def test_label_finder_checks_its_inputs():
    with pytest.raises(TypeError, match="integers 0..255"):
        find_label_values(torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match="0..255"):
        find_label_values(np.full((2, 8, 8), 300))
    labels = np.zeros((2, 8, 8), np.uint8)
    labels[:, 2:5, 2:5] = 7
    with pytest.raises(ValueError, match=r"no pixel with value\(s\) \[9\]"):
        split_label_levels(labels, [9])
    with pytest.raises(ValueError, match="twice"):
        split_label_levels(labels, [7, 7])
