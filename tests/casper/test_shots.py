"""Many shots on a pool of Ray workers (`casper_core.shots`): a local Ray cluster of two CPUs, the weight-free path,
three tiny shots of which one is broken; resumed runs skip complete shots."""
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from casper_core import shots
from omnimatte_core.synthetic import make_scene

TINY = dict(num_objects=2, frames=5, height=32, width=48, effects=("shadow", "reflection"))
EVERY_SHOT = ["--steps", "2", "--formats", "png", "--plate-rounds", "0", "--threads", "1"]


def _write_frames(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for t, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{t:03d}.png"), frame)


def _write_shot(folder: Path, seed: int, label_map: bool = False, mask_frames: int | None = None) -> None:
    """A synthetic shot as a user would lay it out: video/ frames and masks/<object>/ frames (or label_map/)."""
    scene = make_scene(seed=seed, **TINY)
    rgb = (scene.composite.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)[..., ::-1]
    _write_frames(folder / "video", rgb)
    masks = (scene.masks[:, :mask_frames, 0].numpy() > 0.5).astype(np.uint8)
    if label_map:
        labels = np.zeros(masks.shape[1:], np.uint8)
        for i, mask in enumerate(masks):  # where objects overlap, the later one's label
            labels[mask > 0] = 100 * (i + 1)
        _write_frames(folder / "label_map", labels)
    else:
        for i, mask in enumerate(masks):
            _write_frames(folder / "masks" / f"object{i}", mask * 255)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_find_shots_reads_folders_and_lists(tmp_path):
    _write_shot(tmp_path / "all" / "a", seed=0)
    _write_shot(tmp_path / "all" / "b", seed=1, label_map=True)
    (tmp_path / "all" / "b" / "options.txt").write_text("--order 1,0  # b's own order\n")
    (tmp_path / "all" / "notes").mkdir()  # not a shot: skipped inside a folder of shots
    (tmp_path / "list.txt").write_text("# shots to redo\nall/b\n")
    found = shots.find_shots([tmp_path / "all"])
    assert [shot.name for shot in found] == ["a", "b"]
    a, b = found
    assert a.options[:2] == ["--video", str(tmp_path / "all" / "a" / "video")]
    assert a.options[2:] == ["--masks", str(tmp_path / "all/a/masks/object0"), str(tmp_path / "all/a/masks/object1")]
    assert b.options[2:] == ["--label-map", str(tmp_path / "all/b/label_map"), "--order", "1,0"]
    assert [s.name for s in shots.find_shots([tmp_path / "list.txt"])] == ["b"]
    with pytest.raises(ValueError, match="repeated: b"):
        shots.find_shots([tmp_path / "all", tmp_path / "list.txt"])
    with pytest.raises(ValueError, match="no such shot folder"):
        shots.find_shots([tmp_path / "missing"])
    (tmp_path / "all" / "a" / "label_map.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="found both"):
        shots.find_shots([tmp_path / "all" / "a"])


def test_is_complete_needs_the_record_and_the_run_folder(tmp_path):
    assert not shots.is_complete(tmp_path)
    (tmp_path / shots.DONE_FILE).write_text(json.dumps({"status": "done", "run_folder": "omnimatte_0001"}))
    assert not shots.is_complete(tmp_path)  # the record names a run folder that is not there
    (tmp_path / "omnimatte_0001").mkdir()
    (tmp_path / "omnimatte_0001" / "manifest.json").write_text("{}")
    assert shots.is_complete(tmp_path)
    (tmp_path / shots.DONE_FILE).write_text("{not json")
    assert not shots.is_complete(tmp_path)


def test_shots_on_a_local_ray_cluster_report_failures_and_resume(tmp_path, ray_cluster):
    _write_shot(tmp_path / "shots" / "beach", seed=0)
    _write_shot(tmp_path / "shots" / "park", seed=1, label_map=True)
    _write_shot(tmp_path / "shots" / "broken", seed=2, mask_frames=4)  # one mask frame short
    out = tmp_path / "out"
    bar = io.StringIO()
    found = shots.find_shots([tmp_path / "shots"])
    records = shots.run_shots(found, out, EVERY_SHOT, workers=2, stream=bar)
    by_name = {record["name"]: record for record in records}
    assert [record["name"] for record in records] == ["beach", "broken", "park"]
    assert by_name["beach"]["status"] == by_name["park"]["status"] == "done"
    # the broken shot is reported with its cause, and the others finished all the same
    assert by_name["broken"]["status"] == "failed" and "4 frames but the video has 5" in by_name["broken"]["error"]
    assert "shot broken failed" in bar.getvalue() and "3/3" in bar.getvalue()
    assert (out / "broken" / "error.txt").is_file() and not shots.is_complete(out / "broken")
    for name in ("beach", "park"):
        manifest = json.loads((out / name / "omnimatte_0001" / "manifest.json").read_text())
        assert len(manifest["layers"]) == 2 and manifest["frames"] == 5
        assert len(list((out / name / "omnimatte_0001").rglob("*.png"))) >= 3 * 5
        assert shots.is_complete(out / name) and "clean plate" in (out / name / "log.txt").read_text()
    report = json.loads((out / shots.REPORT_FILE).read_text())
    assert [r["status"] for r in report["shots"]] == ["done", "failed", "done"] and report["gpus"] == 0

    # fixed, and run again through the command line: the complete shots are skipped, only the broken one runs
    for i in range(2):
        cv2.imwrite(str(tmp_path / "shots" / "broken" / "masks" / f"object{i}" / "004.png"), np.zeros((32, 48), np.uint8))
    status = shots.main([str(tmp_path / "shots"), "--out", str(out), "--no-progress", "--", *EVERY_SHOT])
    assert status == 0
    report = json.loads((out / shots.REPORT_FILE).read_text())
    assert [r["status"] for r in report["shots"]] == ["skipped", "done", "skipped"]
    assert shots.is_complete(out / "broken") and not (out / "broken" / "error.txt").exists()
    assert not (out / "beach" / "omnimatte_0002").exists()  # nothing was decomposed twice


def test_options_the_runner_sets_are_refused(tmp_path, ray_cluster):
    with pytest.raises(ValueError, match="--out are set per shot"):
        shots.run_shots([], tmp_path, ["--out", "elsewhere"])


def test_a_worker_loads_the_casper_model_once_for_many_shots(tmp_path, monkeypatch):
    """run_shot with the worker's `pipelines` dict: the second shot reuses the model the first one loaded."""
    from casper_core import decompose, testing

    release = testing.write_tiny_release(tmp_path / "models", seed=0)
    loads = []
    real_load = decompose.CasperPipeline.from_pretrained

    def counting_load(*args, **kwargs):
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(decompose.CasperPipeline, "from_pretrained", counting_load)
    casper = ["--casper-base", str(release.base_dir), "--casper-weights", str(release.casper_weights),
              "--casper-steps", "1", "--casper-size", "32x48", "--casper-dtype", "fp32"]
    pipelines = {}
    for seed in (0, 1):
        _write_shot(tmp_path / "shots" / f"s{seed}", seed=seed)
        shot = shots.shot_from_folder(tmp_path / "shots" / f"s{seed}")
        record = shots.run_shot(shot, tmp_path / "out", [*EVERY_SHOT, *casper], pipelines)
        assert record["status"] == "done", record
        assert "casper" in (tmp_path / "out" / f"s{seed}" / "log.txt").read_text()
    assert len(loads) == 1 and len(pipelines) == 1
