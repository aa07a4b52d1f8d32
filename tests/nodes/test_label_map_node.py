"""Masks from Label Map on a lossy (mp4) label map, decoded the way ComfyUI's Load Video gives it (RGB IMAGE 0..1)."""
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

FRAMES, HEIGHT, WIDTH = 10, 96, 160


def _labels():
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    labels = np.zeros((FRAMES, HEIGHT, WIDTH), np.uint8)
    for t in range(FRAMES):
        labels[t][((yy - 48) ** 2 / 600 + (xx - 40 - t) ** 2 / 700) < 1] = 100
        labels[t][(abs(yy - 55) < 25) & (abs(xx - 115 + t) < 20)] = 200
    return labels


def _through_mp4(path, labels, crf="28"):
    """Encode as H.264 (yuv420p) and decode to an IMAGE ``[T, H, W, 3]`` float 0..1."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(24))
        stream.height, stream.width = labels.shape[1:]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": crf}
        for frame in labels:
            rgb = np.ascontiguousarray(np.repeat(frame[..., None], 3, 2))
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return torch.from_numpy(np.stack(frames)).float() / 255


def _iou(mask, truth):
    mask, truth = mask.bool(), torch.from_numpy(truth)
    return float((mask & truth).sum() / (mask | truth).sum())


@pytest.mark.parametrize("tolerance", [-1, 12])  # the default (automatic, what the workflows save) and a number
def test_mp4_label_map_gives_the_objects_not_codec_noise(pack, tmp_path, tolerance):
    labels = _labels()
    image = _through_mp4(tmp_path / "labels.mp4", labels)
    levels = torch.round(image[..., 0] * 255)
    assert bool(((levels > 0) & (levels < 16)).any())  # the codec left noise near 0: it is background, not an object
    node = pack.NODE_CLASS_MAPPINGS["GenOmnimatteMasksFromLabelMap"]()
    with torch.inference_mode():
        masks, count, values = node.split(image, "auto", tolerance)
    assert count == 2 and masks.shape == (2 * FRAMES, HEIGHT, WIDTH)
    found = [int(v) for v in values.split(",")]
    assert abs(found[0] - 100) <= 4 and abs(found[1] - 200) <= 4
    for i, truth in enumerate((100, 200)):
        mask = masks[i * FRAMES:(i + 1) * FRAMES]
        assert _iou(mask, labels == truth) > 0.9
        assert float(mask.mean()) < 1.2 * float((labels == truth).mean())  # no object swallows the background


def test_label_map_node_defaults_to_automatic_tolerance(pack):
    spec = pack.NODE_CLASS_MAPPINGS["GenOmnimatteMasksFromLabelMap"].INPUT_TYPES()["required"]["tolerance"][1]
    assert spec["default"] == -1 and spec["min"] == -1
