"""The main command: decompose a video into layers end to end, on the CPU, with no model weights.

    python -m casper_core.decompose                   # a built-in synthetic scene, scored against its ground truth
    python -m casper_core.decompose --video clip.mp4 --masks person.mp4 dog/   # your own video and masks
    python -m casper_core.decompose --video clip.mp4 --label-map labels.mp4
    python -m casper_core.decompose --video clip.mp4 --masks a.mp4 b.mp4 \\
        --casper-base models/CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP --casper-weights models/casper/casper.safetensors

Stages: removal (the weight-free clean plate with one plate ↔ layers round that takes the other objects' effects
out of each solo video — ``effect_aware.py``, ``--plate-rounds`` — or Casper when weights are given) → layer fit
(base resolution, then the bootstrapped full-resolution fit when the input is larger than ``--base-long-side``) →
per-frame order (depth, or the mask-position heuristic) → compositing → detail transfer → export
(``omnimatte_core.export``). Each stage prints a progress bar and its time; on the synthetic scene the quality
against ground truth is printed at the end.

It lives in casper_core because it runs both removers and casper_core is the side that may import omnimatte_core
(never the reverse); the weight-free path imports nothing of the Casper stack beyond torch. It is a command, not part
of the ComfyUI pack, so omnimatte_core is imported as the top-level package it is when installed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from omnimatte_core import compositing, export, metrics, ordering
from omnimatte_core.compositing import DETAIL_THRESHOLD
from omnimatte_core.demo_scene import DEMO_PRESET, DEMO_SCENE
from omnimatte_core.effect_aware import PLATE_ROUNDS, effect_aware_removal
from omnimatte_core.fit import fit_layers
from omnimatte_core.overview import write_figure
from omnimatte_core.presets import PRESETS
from omnimatte_core.upsample import BASE_LONG_SIDE, base_size, resize_video, upscale_and_refine

from . import defaults, distributed
from .attention import ATTENTION_BACKENDS
from .memory import MEMORY_MODES
from .pipeline import CasperPipeline
from .removal import remove_objects
from .trimask import parse_occluders


# --------------------------------------------------------------------------------------------------------------------
# Progress output


class Stages:
    """Prints one line per stage with a text progress bar, and keeps the seconds each stage took."""

    def __init__(self, stream=None, width: int = 30):
        self.stream = stream or sys.stdout
        self.width = width
        self.seconds: dict[str, float] = {}
        self._name = None
        self._started = 0.0
        self._last_drawn = -1

    def start(self, name: str) -> None:
        self._name, self._started, self._last_drawn = name, time.perf_counter(), -1
        self._count = (0, 1)
        self.bar(0, 1)

    def bar(self, done: int, total: int) -> None:
        """Redraw the current stage's bar (only when the filled width changes, to keep logs short)."""
        self._count = (done, total)
        filled = int(self.width * done / max(total, 1))
        if filled == self._last_drawn and done < total:
            return
        self._last_drawn = filled
        elapsed = time.perf_counter() - self._started
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r  {self._name:<16} [{bar}] {done:>5}/{total:<5} {elapsed:6.1f}s")
        self.stream.flush()

    def fit_progress(self, step: int, total: int, preview=None) -> None:
        self.bar(step, total)

    def done(self) -> float:
        seconds = time.perf_counter() - self._started
        self.seconds[self._name] = seconds
        done, total = self._count
        self._last_drawn = -1
        self.bar(total if done == 0 else done, total)
        self.stream.write("\n")
        self.stream.flush()
        return seconds


# --------------------------------------------------------------------------------------------------------------------
# Inputs


@dataclass
class DemoInput:
    """What the pipeline decomposes: ``video [T,3,H,W]``, ``masks [N,T,1,H,W]`` in 0..1, optional ``depth [T,1,H,W]``.

    ``scene`` is the synthetic scene with its ground truth (None for a user's files)."""

    video: torch.Tensor
    masks: torch.Tensor
    fps: float
    names: list[str]
    source: dict
    depth: torch.Tensor | None = None
    bright_is_near: bool = True
    scene: object | None = None


def _synthetic_input(seed: int) -> DemoInput:
    from omnimatte_core.synthetic import make_scene

    scene = make_scene(seed=seed, **DEMO_SCENE)
    names = [f"object{i}_{kind}" for i, kind in enumerate(scene.effect_types)]
    # The scene's depth video stands in for a depth estimator's output; larger values are farther.
    return DemoInput(video=scene.composite, masks=scene.masks, fps=scene.fps, names=names,
                     source={"synthetic": {"seed": seed, **{k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in DEMO_SCENE.items()}}},
                     depth=scene.depth, bright_is_near=False, scene=scene)


def _file_input(args) -> DemoInput:
    from omnimatte_core.video_io import read_label_map, read_masks, read_video

    video, fps = read_video(args.video, max_frames=args.max_frames)
    t, _, h, w = video.shape
    if args.label_map:
        masks, values = read_label_map(args.label_map, num_frames=t, size=(h, w), max_frames=args.max_frames)
        names = [f"label_{v}" for v in values]
    else:
        masks = read_masks(args.masks, num_frames=t, size=(h, w), max_frames=args.max_frames)
        names = [Path(p).stem or f"object_{i}" for i, p in enumerate(args.masks)]
    depth = None
    if args.depth:
        depth_video, _ = read_video(args.depth, max_frames=args.max_frames)
        if depth_video.shape[0] != t:
            raise ValueError(f"--depth has {depth_video.shape[0]} frames but --video has {t}; expected the same count")
        depth = depth_video.mean(1, keepdim=True)
    return DemoInput(video=video, masks=masks, fps=fps, names=names, depth=depth,
                     bright_is_near=not args.depth_is_far,
                     source={"video": str(args.video), "masks": [str(p) for p in args.masks or []],
                             "label_map": str(args.label_map) if args.label_map else None,
                             "depth": str(args.depth) if args.depth else None})


# --------------------------------------------------------------------------------------------------------------------
# Removal: clean plate or Casper


def _clean_plate_removal(video: torch.Tensor, masks: torch.Tensor, stages: Stages, allow_camera_motion: bool = False,
                         rounds: int = 0, fit_kwargs: dict | None = None, fit_size: tuple[int, int] | None = None):
    # A moving camera raises CameraMotionError (a ValueError) here, before any fitting. Each plate ↔ layers round
    # fits the layers once to find the other objects' effects and takes them out of each solo (effect_aware.py).
    removal = effect_aware_removal(video, masks, rounds=rounds, allow_camera_motion=allow_camera_motion,
                                   fit_size=fit_size, fit_kwargs=dict(fit_kwargs or {}, progress=stages.fit_progress))
    plate = removal.plate
    return removal, {"method": "clean_plate", "filled_fraction": plate.filled_fraction,
                     "camera_motion_px": plate.camera_motion_px, "plate_rounds": removal.rounds}


def _casper_removal(video: torch.Tensor, masks: torch.Tensor, args, stages: Stages, pipelines: dict | None = None):
    from .wan_loading import is_wan_base_model, load_wan_casper_pipeline

    # the family from the files: a Wan2.1-Fun-InP release folder, else the CogVideoX-Fun diffusers folder
    speed = {"attention_backend": args.attention_backend, "compile": args.compile, "fp8_compute": args.fp8_compute}
    if is_wan_base_model(args.casper_base):
        if speed != {"attention_backend": "auto", "compile": False, "fp8_compute": False}:
            raise ValueError("--attention-backend, --compile and --fp8-compute are options of the CogVideoX-Fun base "
                             f"model; {args.casper_base} is a Wan2.1-Fun model: leave them at their defaults")
        load, speed = load_wan_casper_pipeline, {}
    else:
        load = CasperPipeline.from_pretrained
    # a process that decomposes many shots (casper_core.shots) keeps the last model loaded in `pipelines`
    key = (str(args.casper_base), str(args.casper_weights), args.casper_dtype, args.memory_mode, args.device,
           tuple(sorted(speed.items())))
    pipe = (pipelines or {}).get(key)
    if pipe is None:
        if pipelines is not None:
            pipelines.clear()  # one model at a time on a device
        pipe = load(args.casper_base, args.casper_weights, dtype=args.casper_dtype, memory_mode=args.memory_mode,
                    device=args.device, **speed)
        if pipelines is not None:
            pipelines[key] = pipe
    height, width = args.casper_size if args.casper_size else defaults.working_size(tuple(video.shape[-2:]))
    processes = 1
    if distributed.is_active():  # launched by torchrun: this rank runs its share of the jobs (distributed.py)
        pipe = distributed.JobParallelPipeline(pipe)
        processes = pipe.world_size
    batching = {} if args.casper_batch_size is None else {"batch_size": args.casper_batch_size}
    # Casper works at its own resolution and returns the videos resized back to the input's size.
    removal = remove_objects(pipe, video, masks, size=(height, width), prompt=args.prompt, steps=args.casper_steps,
                             seed=args.seed, occluders=args.occluders,
                             progress=lambda step, total, *rest: stages.bar(step, total), **batching)
    return removal, {"method": "casper", "base": str(args.casper_base), "weights": str(args.casper_weights),
                     "processes": processes, "batch_size": args.casper_batch_size,
                     "steps": args.casper_steps, "size": [height, width], "prompt": args.prompt}


# --------------------------------------------------------------------------------------------------------------------
# The pipeline


def run(args, stream=None, pipelines: dict | None = None) -> dict:
    """Run the whole decomposition as the command line describes; returns a summary dict (also written as JSON).

    ``pipelines``: a dict kept by the caller across runs, where the loaded Casper model stays for the next run with
    the same model settings (None: load it for this run only)."""
    out = stream or sys.stdout
    stages = Stages(out)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)

    # 1. Input
    stages.start("input")
    data = _file_input(args) if args.video else _synthetic_input(args.seed)
    stages.done()
    t, _, h, w = data.video.shape
    n = data.masks.shape[0]
    out.write(f"  {n} objects, {t} frames of {h}×{w} at {data.fps:g} fps\n")

    # 2. Removal: clean background + one solo video per object
    fit_size = base_size((h, w), args.base_long_side)
    stages.start("casper" if args.casper_base else "clean plate")
    if args.casper_base:
        removed, removal = _casper_removal(data.video, data.masks, args, stages, pipelines)
    else:
        removed, removal = _clean_plate_removal(
            data.video, data.masks, stages, args.allow_camera_motion, rounds=args.plate_rounds, fit_size=fit_size,
            fit_kwargs=dict(preset=args.preset, steps=args.steps, seed=args.seed, device=args.device))
    if removed is None:  # a torchrun rank whose videos went to rank 0, which goes on alone
        stages.done()
        return {"settings": {"removal": removal}, "seconds": stages.seconds}
    # a writable copy of the background (the clean plate's is one plate seen through every frame)
    background, solos = removed.background.clone(), removed.solos
    stages.done()

    # 3. Layer fit: base resolution, then full resolution when the input is larger
    full_res = fit_size != (h, w)
    stages.start("fit")
    if full_res:
        solos_base = resize_video(solos, fit_size, "area")
        background_base = resize_video(background, fit_size, "area")
        masks_base = (resize_video(data.masks, fit_size, "area") > 0.5).float()
    else:
        solos_base, background_base, masks_base = solos, background, data.masks
    fitted = fit_layers(solos_base, background_base, masks_base, preset=args.preset, steps=args.steps,
                        seed=args.seed, device=args.device, progress=stages.fit_progress)
    stages.done()
    if full_res:
        stages.start("fit full-res")
        fitted, _ = upscale_and_refine(fitted, solos_base, background_base, data.video, data.masks,
                                       solos_upscaled=solos,
                                       background_upscaled=background, preset=args.preset,
                                       steps=args.full_res_steps, seed=args.seed, device=args.device,
                                       progress=stages.fit_progress)
        stages.done()

    # 4. Per-frame order
    stages.start("order")
    order = ordering.order_layers(data.masks, data.depth, manual=args.order, bright_is_near=data.bright_is_near)
    stages.done()

    # 5. Compositing and detail transfer
    stages.start("composite")
    layers = fitted.to_layers(background, order=order, names=data.names, masks=data.masks, fps=data.fps)
    recon_fit = compositing.reconstruct(layers)
    stages.done()
    stages.start("detail transfer")
    # Inside its own mask an object is solid (the mask says so), so detail goes there too (issue: "or inside its
    # own object mask"); this also fills translucent holes a short fit leaves inside objects.
    transferred = compositing.detail_transfer(layers, data.video, threshold=args.detail_threshold,
                                              opaque_inside_masks=not args.keep_fitted_alpha)
    final = transferred.layers
    recon_final = compositing.reconstruct(final)
    stages.done()

    # 6. Export
    settings = {"preset": args.preset, "steps": fitted.steps, "seed": args.seed, "base_size": list(fit_size),
                "full_res": full_res,
                "detail_threshold": args.detail_threshold, "opaque_inside_masks": not args.keep_fitted_alpha,
                "removal": removal,
                "order": "manual" if args.order else ("depth" if data.depth is not None else "mask position")}
    stages.start("export")
    result = export.export_layers(final, args.out, prefix=args.prefix, formats=args.formats, source=data.source,
                                  settings=settings, progress=stages.bar)
    stages.done()
    stages.start("figure")
    figure_path = write_figure(data.video, final, recon_final, result.folder / "demo_layers.png")
    if args.figure:
        write_figure(data.video, final, recon_final, Path(args.figure))
    stages.done()

    # 7. Report
    summary = {"folder": str(result.folder), "seconds": stages.seconds, "total_seconds": sum(stages.seconds.values()),
               "settings": settings, "detail_transfer_fraction": transferred.fraction,
               "reconstruction_psnr": {"fit": metrics.psnr(recon_fit, data.video),
                                       "after_detail_transfer": metrics.psnr(recon_final, data.video)}}
    if data.scene is not None:
        scene = data.scene
        summary["quality"] = {
            "layers": [dict(name=name, **q) for name, q in
                       zip(data.names, metrics.layer_quality(fitted.rgb, fitted.alpha, scene))],
            "layers_after_detail_transfer": [dict(name=name, **q) for name, q in
                                             zip(data.names, metrics.layer_quality(final.rgb, final.alpha, scene))],
            "clean_plate_psnr": metrics.psnr(background, scene.background),
            "order_accuracy": float((order == scene.order).all(1).float().mean()),
        }
    # Strict JSON: a non-finite number (e.g. the PSNR of an exact reconstruction, inf) is written as null.
    text = json.dumps(export._strict_json(summary), indent=1, allow_nan=False)
    (result.folder / "summary.json").write_text(text)
    _print_summary(summary, figure_path, out)
    return summary


def _print_summary(summary: dict, figure: Path, out) -> None:
    out.write("\nQuality\n")
    recon = summary["reconstruction_psnr"]
    out.write(f"  reconstruction of the input: {recon['fit']:.2f} dB from the fit, "
              f"{recon['after_detail_transfer']:.2f} dB after detail transfer "
              f"({100 * summary['detail_transfer_fraction']:.1f}% of pixels transferred)\n")
    quality = summary.get("quality")
    if quality:
        out.write(f"  clean plate vs true background: {quality['clean_plate_psnr']:.2f} dB; "
                  f"order correct in {100 * quality['order_accuracy']:.0f}% of frames\n")
        out.write("  per layer (fit → after detail transfer):\n")
        out.write(f"  {'layer':<22}{'composite PSNR dB':>22}{'alpha MAE':>20}{'effect recall':>15}\n")
        for q, d in zip(quality["layers"], quality["layers_after_detail_transfer"]):
            out.write(f"  {q['name']:<22}{q['composite_psnr']:>11.2f} → {d['composite_psnr']:<7.2f}"
                      f"{q['alpha_mae']:>11.4f} → {d['alpha_mae']:<6.4f}{q['effect_recall']:>15.3f}\n")
    out.write("\nTime per stage\n")
    for name, seconds in summary["seconds"].items():
        out.write(f"  {name:<16}{seconds:8.1f} s\n")
    out.write(f"  {'total':<16}{summary['total_seconds']:8.1f} s\n")
    out.write(f"\nLayers written to {summary['folder']}/ (manifest.json, PNG sequences, videos; "
              f"overview {figure.name})\n")


# --------------------------------------------------------------------------------------------------------------------
# Command line


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as {'x'.join(map(str, defaults.WORK_SIZE))}, "
                                         f"got {text!r}") from None
    if height < 16 or width < 16 or height % 16 or width % 16:
        raise argparse.ArgumentTypeError(f"expected multiples of 16 (at least 16), got {text!r}")
    return height, width


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m casper_core.decompose",
        description="Decompose a video into a clean background and one RGBA layer per object (with its shadows, "
                    "reflections, …). With no --video, a built-in synthetic scene is decomposed and scored.")
    src = parser.add_argument_group("input (default: a synthetic scene with ground truth)")
    src.add_argument("--video", type=Path, help="video file (mp4/mov/webm) or folder of PNG/JPG frames")
    src.add_argument("--masks", type=Path, nargs="+", help="one mask video or PNG folder per object (white = object)")
    src.add_argument("--label-map", type=Path, help="one mask video where each object has its own grey value")
    src.add_argument("--depth", type=Path, help="depth video/frames for the layer order (default: bright = near)")
    src.add_argument("--depth-is-far", action="store_true", help="the depth video is metric: bright = far")
    src.add_argument("--order", help="fixed front-to-back order of the objects, e.g. '1,0' (overrides depth)")
    src.add_argument("--max-frames", type=int, help="use only the first N frames")
    src.add_argument("--allow-camera-motion", action="store_true",
                     help="build the weight-free clean plate even if the camera moves (it will be blurred; "
                          "Casper is the right tool for such clips)")
    src.add_argument("--plate-rounds", type=int, default=PLATE_ROUNDS,
                     help="weight-free path: plate <-> layers rounds that take the other objects' shadows and "
                          "reflections out of each solo video (one extra fit each; 0 = the plain clean plate)")
    fit = parser.add_argument_group("fit")
    fit.add_argument("--preset", default=DEMO_PRESET, choices=sorted(PRESETS), help="fit settings (presets.py)")
    fit.add_argument("--steps", type=int, help="optimiser steps of the base fit (default: the preset's)")
    fit.add_argument("--full-res-steps", type=int, help="steps of the full-resolution fit (default: the preset's)")
    fit.add_argument("--base-long-side", type=int, default=BASE_LONG_SIDE,
                     help=f"fit at most this long a side first (Casper's {BASE_LONG_SIDE}); larger inputs get a "
                          "full-res fit")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--device", default="cpu", help="torch device for the fit (cpu, cuda, …)")
    fit.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    fit.add_argument("--detail-threshold", type=float, default=DETAIL_THRESHOLD,
                     help="composited opacity from which input detail is copied into a layer (paper: 1)")
    fit.add_argument("--keep-fitted-alpha", action="store_true",
                     help="detail transfer only where the fitted opacity reaches the threshold; by default each "
                          "object is also made solid inside its own mask first")
    casper = parser.add_argument_group("Casper (instead of the weight-free clean plate)")
    casper.add_argument("--casper-base", type=Path, help="CogVideoX-Fun-V1.5-5b-InP diffusers folder, or a "
                        "Wan2.1-Fun-1.3B/14B-InP release folder (the family is read from the files)")
    casper.add_argument("--casper-weights", type=Path, help="Casper transformer .safetensors")
    casper.add_argument("--casper-steps", type=int, default=defaults.STEPS)
    casper.add_argument("--casper-batch-size", type=int,
                        help="Casper jobs per transformer batch (default: all of a video's jobs in one; under "
                             "torchrun 1, each process running its share one by one, bit-identical to one process "
                             "with 1)")
    casper.add_argument("--prompt", default=defaults.PROMPT, help="Casper's text prompt for the removal")
    casper.add_argument("--occluders", type=parse_occluders,
                        help="occluded foreground (supplement Sec. A): '1,0' = objects front to back (0-based, "
                             "nearest first), '0:1,2' = per object the objects in front of it; an object's solo then "
                             "also removes its occluders over it")
    height, width = defaults.WORK_SIZE
    casper.add_argument("--casper-size", type=_size, help="Casper's working HEIGHTxWIDTH, multiples of 16 "
                        f"(default {height}x{width}, or {width}x{height} for portrait video)")
    casper.add_argument("--casper-dtype", default=defaults.DTYPES[0], choices=defaults.DTYPES)
    casper.add_argument("--memory-mode", default="gpu", choices=MEMORY_MODES,
                        help="where Casper's weights live: gpu (all on --device), or one of the offload and fp8 "
                             "modes (README, 'Model files & memory modes')")
    casper.add_argument("--attention-backend", default="auto", choices=ATTENTION_BACKENDS,
                        help="attention kernel (CogVideoX-Fun base model): auto, an SDPA kernel, or sage")
    casper.add_argument("--compile", action="store_true",
                        help="torch.compile the transformer blocks (CUDA; CogVideoX-Fun base model; README, "
                             "'Speed options')")
    casper.add_argument("--fp8-compute", action="store_true",
                        help="fp8 matrix products in the transformer blocks (GPUs of compute capability >= 8.9; "
                             "CogVideoX-Fun base model)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, default=Path("output"), help="folder for the run folders (default output/)")
    output.add_argument("--prefix", default="omnimatte", help="run-folder name prefix ([A-Za-z0-9._-])")
    output.add_argument("--formats", nargs="+", choices=list(export.FORMATS),
                        help="export formats (default: all this machine can write)")
    output.add_argument("--figure", type=Path, help="also write the overview picture here (never overwritten)")
    output.add_argument("--traceback", action="store_true",
                        help="on an error, print the full Python traceback (default: a one-line message)")
    return parser


FIGURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
"""File types ``--figure`` can be written as (OpenCV picks the encoder from the extension)."""


def _fail(parser: argparse.ArgumentParser, message: str) -> None:
    """Exit with status 2 and one line on stderr (no usage text, no traceback)."""
    parser.exit(2, f"{parser.prog}: error: {message}\n")


def _writable_folder_problem(folder: Path, option: str) -> str | None:
    """Why files cannot be created in ``folder`` (created with its parents when missing), or None."""
    folder = folder.expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        return f"{option}: {str(folder)!r} is a file, expected a folder"
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return f"{option}: cannot create {str(folder)!r}: {str(existing)!r} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == folder else f"cannot be created: {str(existing)!r} is not writable"
        return f"{option}: {str(folder)!r} {what}"
    return None


def _device_problem(name: str) -> str | None:
    """Why the torch device ``name`` cannot be used on this machine, or None."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as error:
        return f"--device {name!r} is not a torch device ({error}); expected cpu, cuda, cuda:1, mps, ..."
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return (f"--device {name!r}: this machine has no usable CUDA GPU (torch {torch.__version__}, "
                    f"built for CUDA {torch.version.cuda or 'none'}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            return f"--device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here (cuda:0 ...)"
    try:
        torch.empty(1, device=device)
    except Exception as error:  # each backend fails its own way (AssertionError, RuntimeError, ...)
        return f"--device {name!r} cannot be used here: {' '.join(str(error).split())}"
    return None


def check_files(parser: argparse.ArgumentParser, args) -> None:
    """Checks of the machine and the files named (output folders, the figure, codecs, device, depth size), all before
    the slow stages start; each failure exits with status 2 and one line."""
    problem = _writable_folder_problem(args.out, "--out")
    if problem:
        _fail(parser, problem)
    if args.figure is not None:
        figure = args.figure.expanduser()
        if figure.suffix.lower() not in FIGURE_EXTENSIONS:
            _fail(parser, f"--figure {str(figure)!r}: expected a picture file name ending in "
                          f"{', '.join(FIGURE_EXTENSIONS)}")
        if figure.exists() or figure.is_symlink():
            _fail(parser, f"--figure {str(figure)!r} exists; choose another path (nothing is overwritten)")
        problem = _writable_folder_problem(figure.parent, "--figure")
        if problem:
            _fail(parser, problem)
    if args.formats:
        available = export.available_formats()
        missing = [f for f in args.formats if not available.get(f)]
        if missing:
            can = [f for f, ok in available.items() if ok]
            _fail(parser, f"--formats {' '.join(missing)}: this machine's PyAV/FFmpeg cannot write "
                          f"{'it' if len(missing) == 1 else 'them'}; it can write {' '.join(can)}")
    problem = _device_problem(args.device)
    if problem:
        _fail(parser, problem)
    if args.video is not None and args.depth is not None:
        from omnimatte_core.video_io import read_video

        try:  # one frame of each: the full read comes later
            video_size = tuple(read_video(args.video, max_frames=1)[0].shape[-2:])
            depth_size = tuple(read_video(args.depth, max_frames=1)[0].shape[-2:])
        except (ValueError, OSError) as error:
            _fail(parser, " ".join(str(error).split()))
        if depth_size != video_size:
            _fail(parser, f"--depth is {depth_size[0]}×{depth_size[1]} (H×W) but --video is "
                          f"{video_size[0]}×{video_size[1]}; expected the same size (resize the depth video)")


def check_args(parser: argparse.ArgumentParser, args) -> None:
    """Cheap checks before any heavy work; ``parser.error`` exits with a message naming the option."""
    if args.video is None and (args.masks or args.label_map or args.depth):
        parser.error("--masks/--label-map/--depth need --video")
    if args.video is not None and bool(args.masks) == bool(args.label_map):
        parser.error("with --video give either --masks (one per object) or --label-map, not both or neither")
    if bool(args.casper_base) != bool(args.casper_weights):
        parser.error("Casper needs both --casper-base and --casper-weights")
    if args.casper_base and args.video is None:
        parser.error("Casper runs on your own --video (the synthetic scene uses the clean plate)")
    if distributed.environment_world_size() > 1 and not args.casper_base:
        parser.error("several processes (torchrun) share Casper's jobs; the weight-free clean plate runs in one "
                     "process: start it with python, not torchrun")
    for option in ("steps", "full_res_steps", "max_frames", "threads", "casper_batch_size"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be a positive integer, got {value}")
    if args.plate_rounds < 0:
        parser.error(f"--plate-rounds must be 0 or more, got {args.plate_rounds}")
    if args.base_long_side < 8:
        parser.error(f"--base-long-side must be at least 8, got {args.base_long_side}")
    if not 0.5 < args.detail_threshold <= 1.0:
        parser.error(f"--detail-threshold must be in (0.5, 1], got {args.detail_threshold}")
    try:
        export.check_prefix(args.prefix, "--prefix")
    except ValueError as error:
        parser.error(str(error))
    check_files(parser, args)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    try:  # under torchrun: join the group; this rank computes on its own GPU
        process = distributed.init_from_environment(args.device)
    except ValueError as error:
        parser.error(str(error))
    if process is not None:
        args.device = process.device
    # the other ranks of a torchrun launch print nothing: rank 0 reports the whole run
    stream = open(os.devnull, "w") if process is not None and process.rank != 0 else sys.stdout
    print("Generative Omnimatte — decomposing " + (str(args.video) if args.video else "a synthetic scene") +
          (" with Casper" if args.casper_base else " with the weight-free clean plate") +
          (f", its jobs over {process.world_size} processes" if process is not None else ""), file=stream)
    try:
        run(args, stream=stream)
        distributed.shutdown(synchronise=True)
    except KeyboardInterrupt:
        print("\ninterrupted (a run folder is only ever written whole)", file=sys.stderr)
        return 130
    except Exception as error:  # bad files, settings or machine: one line, not a traceback (unless asked)
        if args.traceback:
            raise
        kind = "" if isinstance(error, (ValueError, OSError)) else f"{type(error).__name__}: "
        print(f"\nerror: {kind}{' '.join(str(error).split())} (--traceback shows where)", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
