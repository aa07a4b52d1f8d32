"""Many shots: the whole decomposition (``casper_core.decompose``) of each shot, on a pool of workers through Ray.

    python -m casper_core.shots shots/ --out layers/                       # every shot folder under shots/
    python -m casper_core.shots shots/a shots/b list.txt --out layers/ -- --preset default \\
        --casper-base models/CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP --casper-weights models/casper/casper.safetensors
    ray start --head; ray start --address HEAD:6379   # on each other machine; then:
    python -m casper_core.shots shots/ --out layers/ --address auto        # paths must be the same on every machine

A **shot folder** holds ``video`` (a video file ``video.mp4``/``.mov``/… or a folder ``video/`` of frames) and the
objects' masks, either ``masks/`` (one mask video or frame folder per object, taken in name order) or
``label_map`` (a file ``label_map.*`` or a folder ``label_map/``); optionally ``depth`` (``depth.*`` or ``depth/``)
and ``options.txt`` (more ``decompose`` options for this shot only, e.g. ``--order 1,0``). Each argument is a shot
folder, a folder of shot folders, or a text file listing shot folders (one a line, relative to the file; ``#``
starts a comment). Options after ``--`` go to ``decompose`` for every shot.

Each shot is written to ``<out>/<shot name>/``: decompose's run folder (``omnimatte_0001/``), ``log.txt`` (what
decompose printed) and, last, ``shot.json``. A shot is **complete** when its ``shot.json`` says ``"done"`` and the
run folder it names has its ``manifest.json``; complete shots are skipped, so a stopped or partly failed batch is
resumed by running the same command again. A shot that fails gets ``error.txt`` and is reported, and the others go
on; it is tried again on the next run. ``<out>/shots_report.json`` lists what this run did with every shot.

Workers are Ray actors, each keeping its Casper model loaded from one shot to the next. On a cluster with GPUs each
worker holds one GPU (``num_gpus=1``; ``--device cuda`` is added unless given) and there is one worker per GPU;
without GPUs each takes ``--cpus-per-shot`` cores. Ray comes with the optional extra ``scale``
(``pip install -e ".[scale]"``).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Shot", "find_shots", "is_complete", "run_shot", "run_shots", "main"]

DONE_FILE = "shot.json"
"""Written last into a shot's output folder; the shot is complete when it says done (see `is_complete`)."""
REPORT_FILE = "shots_report.json"
OPTIONS_FILE = "options.txt"
RESERVED_OPTIONS = ("--video", "--masks", "--label-map", "--depth", "--out", "--figure")
"""decompose options the runner sets per shot; refused among the options for every shot."""


@dataclass(frozen=True)
class Shot:
    """One shot: its ``name`` (the output folder's), its ``folder`` and the decompose options naming its files."""

    name: str
    folder: Path
    options: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------------
# Finding shots


def _entry(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` as a frame folder, else the one file ``folder/stem.*``, else None."""
    if (folder / stem).is_dir():
        return folder / stem
    files = sorted(p for p in folder.glob(f"{stem}.*") if p.is_file())
    if len(files) > 1:
        raise ValueError(f"{folder}: several files named {stem}.* ({', '.join(p.name for p in files)}); keep one")
    return files[0] if files else None


def shot_from_folder(folder: Path) -> Shot:
    """The `Shot` in a shot folder (see the module docstring for its layout)."""
    folder = Path(folder)
    video = _entry(folder, "video")
    if video is None:
        raise ValueError(f"{folder}: no video (expected a file video.* or a folder video/ of frames)")
    options = ["--video", str(video)]
    label_map = _entry(folder, "label_map")
    masks = sorted((folder / "masks").iterdir()) if (folder / "masks").is_dir() else []
    masks = [p for p in masks if not p.name.startswith(".")]
    if bool(masks) == bool(label_map):
        raise ValueError(f"{folder}: expected either masks/ (one mask video or frame folder per object) or "
                         f"label_map, {'found both' if masks else 'found neither'}")
    options += ["--masks", *map(str, masks)] if masks else ["--label-map", str(label_map)]
    depth = _entry(folder, "depth")
    if depth is not None:
        options += ["--depth", str(depth)]
    if (folder / OPTIONS_FILE).is_file():
        options += shlex.split((folder / OPTIONS_FILE).read_text(), comments=True)
    return Shot(name=folder.name, folder=folder, options=options)


def _is_shot_folder(folder: Path) -> bool:
    return folder.is_dir() and _entry(folder, "video") is not None


def find_shots(paths) -> list[Shot]:
    """The shots named by `paths` (shot folders, folders of shot folders, text files listing shot folders), in the
    order given; folders of shots in name order. Shot names (folder names) must be unique."""
    folders: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            for line in path.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    listed = Path(line)
                    folders.append(listed if listed.is_absolute() else path.parent / listed)
        elif _is_shot_folder(path):
            folders.append(path)
        elif path.is_dir():
            inside = sorted(p for p in path.iterdir() if _is_shot_folder(p))
            if not inside:
                raise ValueError(f"{path}: neither a shot folder (no video) nor a folder of shot folders")
            folders += inside
        else:
            raise ValueError(f"{path}: no such shot folder or list file")
    shots = [shot_from_folder(folder) for folder in folders]
    names = [shot.name for shot in shots]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"shot names must be unique (they name the output folders); repeated: {', '.join(repeated)}")
    return shots


# --------------------------------------------------------------------------------------------------------------------
# One shot


def is_complete(shot_out: Path) -> bool:
    """Whether ``shot_out`` holds a finished decomposition: ``shot.json`` says done and names a run folder that has
    its ``manifest.json`` (decompose writes a run folder whole, and the runner writes ``shot.json`` after it)."""
    try:
        record = json.loads((Path(shot_out) / DONE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(record, dict) and record.get("status") == "done"
            and (Path(shot_out) / str(record.get("run_folder")) / "manifest.json").is_file())


def _write_json_atomically(path: Path, data) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(json.dumps(data, indent=1, default=str))
    os.replace(temporary, path)


def run_shot(shot: Shot, out: Path, common_options: list[str], pipelines: dict | None = None) -> dict:
    """Decompose one shot into ``out/<shot name>/``; never raises for the shot's own failures.

    Returns ``{"name", "status": "done" | "failed", "seconds", "run_folder" or "error"}``; a failure also leaves
    ``error.txt`` (the traceback) beside ``log.txt``. ``pipelines`` keeps the Casper model loaded between shots
    (`casper_core.decompose.run`).
    """
    from . import decompose

    started = time.perf_counter()
    shot_out = Path(out) / shot.name
    shot_out.mkdir(parents=True, exist_ok=True)
    (shot_out / "error.txt").unlink(missing_ok=True)
    argv = [*common_options, *shot.options, "--out", str(shot_out)]
    with open(shot_out / "log.txt", "a") as log:
        log.write(f"\n# python -m casper_core.decompose {shlex.join(argv)}\n")
        try:
            parser = decompose.build_parser()
            messages = io.StringIO()
            with contextlib.redirect_stderr(messages):
                try:
                    args = parser.parse_args(argv)
                    decompose.check_args(parser, args)
                except SystemExit:  # argparse reports bad options on stderr and exits
                    raise ValueError(" ".join(messages.getvalue().split()) or "bad decompose options") from None
            summary = decompose.run(args, stream=log, pipelines=pipelines)
        except Exception as error:
            (shot_out / "error.txt").write_text(traceback.format_exc())
            return {"name": shot.name, "status": "failed", "seconds": time.perf_counter() - started,
                    "error": f"{type(error).__name__}: {' '.join(str(error).split())}"}
    run_folder = Path(summary["folder"]).name
    record = {"name": shot.name, "status": "done", "seconds": time.perf_counter() - started,
              "run_folder": run_folder, "argv": argv, "total_seconds": summary.get("total_seconds"),
              "reconstruction_psnr": summary.get("reconstruction_psnr")}
    _write_json_atomically(shot_out / DONE_FILE, record)  # last: the shot is complete from here on
    return {key: record[key] for key in ("name", "status", "seconds", "run_folder")}


# --------------------------------------------------------------------------------------------------------------------
# The pool


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("casper_core.shots runs its workers through Ray, which is not installed: "
                          "pip install 'comfyui-generative-omnimatte[scale]' (or pip install ray)") from None
    return ray


class _ShotWorker:
    """A Ray actor: decomposes one shot at a time, keeping the Casper model loaded between shots."""

    def __init__(self, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.pipelines: dict = {}

    def run(self, shot: Shot, out: str, common_options: list[str]) -> dict:
        return run_shot(shot, Path(out), common_options, self.pipelines)


def run_shots(shots: list[Shot], out: Path, common_options: list[str] | None = None, *, workers: int | None = None,
              cpus_per_shot: int = 1, progress: bool = True, stream=None) -> list[dict]:
    """Decompose every shot not yet complete on a pool of Ray workers; returns one record per shot, in order.

    Uses the Ray cluster this process is connected to (``ray.init`` is called with no address when none is).
    Records: ``{"name", "status": "done" | "failed" | "skipped", "seconds", …}``; a failed shot does not stop the
    others. ``workers`` None: one per GPU of the cluster, else one per ``cpus_per_shot`` CPUs.
    """
    ray = _import_ray()
    out = Path(out)
    common_options = list(common_options or [])
    stream = stream or sys.stderr
    reserved = [option for option in common_options if option.split("=", 1)[0] in RESERVED_OPTIONS]
    if reserved:
        raise ValueError(f"options for every shot: {' '.join(reserved)} are set per shot by the runner; remove them")
    if cpus_per_shot < 1:
        raise ValueError(f"cpus_per_shot: expected at least 1, got {cpus_per_shot}")
    if not ray.is_initialized():
        ray.init()
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus and not any(option.split("=", 1)[0] == "--device" for option in common_options):
        common_options += ["--device", "cuda"]
    if workers is None:
        workers = gpus or max(1, int(resources.get("CPU", 1)) // cpus_per_shot)
    if workers < 1:
        raise ValueError(f"workers: expected at least 1, got {workers}")

    records: dict[str, dict] = {}
    todo = []
    for shot in shots:
        if is_complete(out / shot.name):
            records[shot.name] = {"name": shot.name, "status": "skipped", "seconds": 0.0}
        else:
            todo.append(shot)
    bar = _ProgressBar(len(shots), len(shots) - len(todo), progress, stream)
    actor = ray.remote(_ShotWorker).options(num_cpus=cpus_per_shot, num_gpus=1 if gpus else 0)
    pool = [actor.remote(cpus_per_shot) for _ in range(min(workers, len(todo)))]
    running: dict = {}  # task reference -> (worker, shot)
    queue = list(todo)
    try:
        while queue or running:
            while queue and pool:
                worker, shot = pool.pop(), queue.pop(0)
                running[worker.run.remote(shot, str(out), common_options)] = (worker, shot)
            (finished,), _ = ray.wait(list(running), num_returns=1)
            worker, shot = running.pop(finished)
            try:
                record = ray.get(finished)
                pool.append(worker)
            except ray.exceptions.RayError as error:  # the worker process died (out of memory, a crash)
                record = {"name": shot.name, "status": "failed", "seconds": None,
                          "error": f"worker lost: {' '.join(str(error).split())[:500]}"}
                pool.append(actor.remote(cpus_per_shot))
            records[shot.name] = record
            bar.update(record)
    finally:
        for reference in running:
            ray.cancel(reference, force=True)
        bar.close()
    ordered = [records[shot.name] for shot in shots if shot.name in records]
    out.mkdir(parents=True, exist_ok=True)
    _write_json_atomically(out / REPORT_FILE, {"workers": workers, "gpus": gpus, "shots": ordered})
    return ordered


class _ProgressBar:
    """tqdm over the shots (done + skipped + failed of all), one line per failure; plain lines without tqdm."""

    def __init__(self, total: int, skipped: int, enabled: bool, stream):
        self.stream, self.enabled = stream, enabled
        self.counts = {"done": 0, "failed": 0, "skipped": skipped}
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=skipped, unit="shot", file=stream, dynamic_ncols=True)
                self.bar.set_postfix(self.counts)

    def update(self, record: dict) -> None:
        self.counts[record["status"]] += 1
        if record["status"] == "failed":
            line = f"shot {record['name']} failed: {record['error']}"
        else:
            line = f"shot {record['name']} done in {record['seconds']:.1f} s"
        if self.bar is not None:
            if record["status"] == "failed":
                self.bar.write(line, file=self.stream)
            self.bar.set_postfix(self.counts)
            self.bar.update(1)
        elif self.enabled:
            self.stream.write(line + "\n")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m casper_core.shots",
        description="Decompose many shots into layers on a pool of Ray workers (one per GPU, else per CPU group); "
                    "complete shots are skipped, failures are reported per shot. Options after -- go to "
                    "python -m casper_core.decompose for every shot.")
    parser.add_argument("shots", nargs="+", type=Path,
                        help="shot folders, folders of shot folders, or text files listing shot folders")
    parser.add_argument("--out", type=Path, required=True, help="one output folder per shot is made in here")
    parser.add_argument("--workers", type=int, help="workers (default: one per GPU, else one per --cpus-per-shot)")
    parser.add_argument("--cpus-per-shot", type=int, default=1, help="CPU cores each worker takes (default 1)")
    parser.add_argument("--address", help="Ray cluster to join ('auto' = the one `ray start` made on this machine; "
                                          "default: a local one for this run)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    common = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = build_parser()
    args = parser.parse_args(own)
    for option in ("workers", "cpus_per_shot"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be a positive integer, got {value}")
    try:
        shots = find_shots(args.shots)
        ray = _import_ray()
        if not ray.is_initialized():
            ray.init(address=args.address)
        records = run_shots(shots, args.out, common, workers=args.workers, cpus_per_shot=args.cpus_per_shot,
                            progress=not args.no_progress)
    except (ValueError, ImportError, OSError) as error:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(error).split())}\n")
    counts = {status: sum(r["status"] == status for r in records) for status in ("done", "skipped", "failed")}
    print(f"{len(records)} shots: {counts['done']} done, {counts['skipped']} skipped (complete before), "
          f"{counts['failed']} failed; report in {args.out / REPORT_FILE}")
    for record in records:
        if record["status"] == "failed":
            print(f"  {record['name']}: {record['error']} (see {args.out / record['name'] / 'error.txt'})")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
