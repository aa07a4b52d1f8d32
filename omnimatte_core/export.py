"""Writing layers to disk: RGBA PNG sequences, alpha videos, checkerboard previews, the background and a manifest.

One call, :func:`export_layers`, writes one *run folder* ``<out_dir>/<prefix>_0001/`` (the first free number)::

    manifest.json                      layer names, per-frame order, fps, size, frames, source, settings, files
    background/background_00000.png    the clean background, 8-bit RGB
    background.mov / .webm             the background as video (same codecs as the layers, opaque)
    background.mp4                     the background for any player (H.264 or MPEG-4)
    layers/00_<name>/<name>_00000.png  per layer, 8-bit RGBA, straight (not premultiplied) alpha; where a layer is
                                       empty (alpha below ``ALPHA_FLOOR``) alpha and colour are exactly 0
    00_<name>.mov                      ProRes 4444 with alpha (prores_ks, yuva444p10le)
    00_<name>.webm                     VP9 with alpha (libvpx-vp9, yuva420p)
    00_<name>_checker.mp4              the layer over a checkerboard, for a quick look

Nothing is ever overwritten: everything is written into a hidden temporary folder inside ``out_dir`` and renamed to
a run folder that did not exist at the end; on any error the temporary folder is removed, so no half-written run is
left behind. Videos with 4:2:0 chroma (the H.264/MPEG-4 previews) need even sizes: odd sizes are padded by one
repeated row/column there and the manifest says so; the PNGs and alpha videos keep the exact size. The manifest is
strict JSON: non-finite numbers in ``source``/``settings`` are written as ``null``.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

__all__ = ["ALPHA_VIDEO_FORMATS", "ExportResult", "available_formats", "check_prefix", "export_layers",
           "checkerboard", "to_uint8"]


@dataclass(frozen=True)
class _VideoFormat:
    codec: str
    pix_fmt: str
    options: dict
    suffix: str


ALPHA_VIDEO_FORMATS: dict[str, _VideoFormat] = {
    # ProRes 4444: the editors' interchange format for alpha; 10-bit 4:4:4 with a 16-bit alpha plane.
    "prores": _VideoFormat("prores_ks", "yuva444p10le", {"profile": "4444", "vendor": "apl0"}, ".mov"),
    # VP9 with alpha: what browsers play; alpha stored as a second VP9 stream that libvpx decodes.
    "webm": _VideoFormat("libvpx-vp9", "yuva420p", {"crf": "16", "b": "0", "row-mt": "1"}, ".webm"),
}
_PREVIEW_CODECS = ("libx264", "h264", "mpeg4")
"""First one PyAV can open for writing is used for the checkerboard previews and background.mp4."""
FORMATS = ("png", *ALPHA_VIDEO_FORMATS, "preview")
_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")
ALPHA_FLOOR = 1.5 / 255
"""Alpha below this (8-bit values 0 and 1) is written as exactly 0, with colour 0: a fitted alpha comes out of a
sigmoid and is never exactly 0, and a 1/255 veil over an empty area changes no pixel by more than one level."""
_NAME_TAKEN = {errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR}
"""What ``os.rename`` raises when the target run folder appeared meanwhile (any other error is real)."""


@dataclass
class ExportResult:
    """Where an export went. ``files`` maps a kind (``png``, ``prores``, …) to paths relative to ``folder``."""

    folder: Path
    manifest: Path
    files: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------------
# Checks


def check_prefix(prefix: str, name: str = "prefix") -> str:
    """Return ``prefix`` if it is a safe file-name prefix, else raise ``ValueError``.

    Safe: 1–100 characters from ``A–Z a–z 0–9 . _ -``, not starting with ``.`` or ``-``, no ``..``; so no path
    separators, no absolute paths, no hidden files and no traversal out of the output folder."""
    if not isinstance(prefix, str):
        raise TypeError(f"{name} must be a string, got {type(prefix).__name__}")
    if (not _PREFIX_PATTERN.match(prefix) or len(prefix) > 100 or ".." in prefix
            or prefix[0] in ".-"):
        raise ValueError(f"{name} must be 1–100 characters from A-Z a-z 0-9 . _ - (no path separators, no '..', "
                         f"not starting with '.' or '-'), got {prefix!r}")
    return prefix


def _file_safe(name: str) -> str:
    """A layer name as a file-name part (the manifest keeps the name as given)."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", str(name)).strip("_")
    return safe[:60] or "layer"


def _codec_writable(codec: str, pix_fmt: str) -> bool:
    import av

    try:
        formats = av.Codec(codec, "w").video_formats or ()
    except Exception:  # PyAV raises several types for a codec missing from its FFmpeg build
        return False
    return pix_fmt in {f.name for f in formats}


def available_formats() -> dict[str, bool]:
    """Which export formats this machine's PyAV/FFmpeg can write."""
    found = {"png": True}
    for key, fmt in ALPHA_VIDEO_FORMATS.items():
        found[key] = _codec_writable(fmt.codec, fmt.pix_fmt)
    found["preview"] = _preview_codec() is not None
    return found


def _preview_codec() -> str | None:
    return next((c for c in _PREVIEW_CODECS if _codec_writable(c, "yuv420p")), None)


def _resolve_formats(formats) -> tuple[list[str], list[str]]:
    """Chosen formats and those skipped because this machine cannot write them (only when ``formats`` is None)."""
    available = available_formats()
    if formats is None:
        chosen = [f for f in FORMATS if available[f]]
        return chosen, [f for f in FORMATS if not available[f]]
    if isinstance(formats, str):
        formats = [formats]
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"formats must be a subset of {list(FORMATS)}, got unknown {unknown}")
    if not formats:
        raise ValueError(f"formats must name at least one of {list(FORMATS)}")
    missing = [f for f in formats if not available[f]]
    if missing:
        raise RuntimeError(f"this PyAV/FFmpeg build cannot write {missing} "
                           f"(codecs {[ALPHA_VIDEO_FORMATS[f].codec for f in missing if f in ALPHA_VIDEO_FORMATS]}); "
                           "leave formats=None to write every available format")
    return formats, []


def _check_layers(layers) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, list[str], float]:
    for attr in ("rgb", "alpha", "background"):
        if not isinstance(getattr(layers, attr, None), torch.Tensor):
            raise TypeError(f"layers must have a tensor attribute {attr!r} (an omnimatte_core.layers.Layers), "
                            f"got {type(layers).__name__}")
    rgb, alpha, background = layers.rgb, layers.alpha, layers.background
    if rgb.ndim != 5 or rgb.shape[2] != 3:
        raise ValueError(f"layers.rgb must be [N,T,3,H,W], got {tuple(rgb.shape)}")
    n, t, _, h, w = rgb.shape
    if tuple(alpha.shape) != (n, t, 1, h, w):
        raise ValueError(f"layers.alpha must be [N,T,1,H,W] = {(n, t, 1, h, w)} to match layers.rgb, "
                         f"got {tuple(alpha.shape)}")
    if tuple(background.shape) != (t, 3, h, w):
        raise ValueError(f"layers.background must be [T,3,H,W] = {(t, 3, h, w)} to match the layers, "
                         f"got {tuple(background.shape)}")
    masks = getattr(layers, "masks", None)
    if isinstance(masks, torch.Tensor) and masks.shape[0] != n:
        raise ValueError(f"layers.masks holds {masks.shape[0]} objects but there are {n} layers; "
                         "expected one mask per layer")
    names = getattr(layers, "names", None)
    names = [f"layer_{i}" for i in range(n)] if names is None else [str(x) for x in names]
    if len(names) != n:
        raise ValueError(f"layers.names has {len(names)} names but there are {n} layers; expected one name per layer")
    order = getattr(layers, "order", None)
    if order is not None:
        order = torch.as_tensor(order)
        if tuple(order.shape) != (t, n):
            raise ValueError(f"layers.order must be [T,N] = {(t, n)} (front to back per frame), "
                             f"got {tuple(order.shape)}")
        expected = torch.arange(n)
        if not bool((order.long().sort(dim=1).values == expected).all()):
            raise ValueError("layers.order must hold a permutation of the layer indices in every frame")
    fps = float(getattr(layers, "fps", None) or 24.0)
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"layers.fps must be a positive frame rate, got {fps!r}")
    return rgb, alpha, background, order, names, fps


def _prepare_out_dir(out_dir) -> Path:
    if not isinstance(out_dir, (str, Path)):
        raise TypeError(f"out_dir must be a path, got {type(out_dir).__name__}")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out_dir {str(out)!r} is an existing file, not a folder; it is left untouched")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise type(error)(error.errno, f"cannot create the output folder {str(out)!r}: {error.strerror}",
                          str(out)) from error
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(f"the output folder {str(out)!r} is not writable")
    return out


# --------------------------------------------------------------------------------------------------------------------
# Writers


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[..., C, H, W]`` float 0..1 → ``[..., H, W, C]`` uint8 (rounded)."""
    return (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


CHECKER_SHADES = (0.4, 0.6)
"""Grey levels (0..1) of the dark and the light squares in exported previews and the overview picture."""


def checkerboard(height: int, width: int, square: int = 16,
                 shades: tuple[float, float] = CHECKER_SHADES) -> torch.Tensor:
    """``[3, H, W]`` grey checkerboard in 0..1, the usual backdrop that shows transparency: ``square``-pixel squares
    alternating between ``shades = (dark, light)``, dark at the top-left corner."""
    dark, light = shades
    yy = torch.arange(height)[:, None] // square
    xx = torch.arange(width)[None, :] // square
    return (((yy + xx) % 2).float() * (light - dark) + dark).expand(3, height, width)


def _write_png_sequence(folder: Path, stem: str, frames: np.ndarray, tick) -> list[str]:
    """frames ``[T,H,W,3|4]`` uint8 RGB(A) → ``folder/stem_00000.png`` …"""
    folder.mkdir(parents=True)
    names = []
    for index, frame in enumerate(frames):
        code = cv2.COLOR_RGBA2BGRA if frame.shape[-1] == 4 else cv2.COLOR_RGB2BGR
        path = folder / f"{stem}_{index:05d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(frame, code)):
            raise OSError(f"could not write {str(path)!r}")
        names.append(path.name)
        tick()
    return names


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _write_video(path: Path, frames: np.ndarray, fps: float, codec: str, pix_fmt: str, options: dict, tick) -> None:
    """frames ``[T,H,W,3|4]`` uint8 → one video stream; PyAV converts RGB(A) to the codec's pixel format."""
    import av

    height, width = frames.shape[1:3]
    source_format = "rgba" if frames.shape[-1] == 4 else "rgb24"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=_fps_fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = dict(options)
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=source_format)
            for packet in stream.encode(video_frame):
                container.mux(packet)
            tick()
        for packet in stream.encode():
            container.mux(packet)


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """4:2:0 codecs need even sizes: repeat the last row/column where a size is odd."""
    h, w = frames.shape[1:3]
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _preview_options(codec: str) -> dict:
    return {"qscale": "2"} if codec == "mpeg4" else {"crf": "16", "preset": "medium"}


def _strict_json(value):
    """``value`` with non-finite floats (NaN, ±inf) replaced by None and numpy scalars by Python ones, so that
    ``json.dumps(..., allow_nan=False)`` gives strict JSON. Other types are left for ``json.dumps`` to judge."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def clean_empty(rgb: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight ``rgb [..., 3, H, W]`` and ``alpha [..., 1, H, W]`` with alpha below ``ALPHA_FLOOR`` set to 0 and the
    colour there to 0, as every layer file is written."""
    empty = alpha < ALPHA_FLOOR
    return rgb.masked_fill(empty, 0.0), alpha.masked_fill(empty, 0.0)


# --------------------------------------------------------------------------------------------------------------------
# Public API


def export_layers(
    layers,
    out_dir,
    *,
    prefix: str = "omnimatte",
    formats: Sequence[str] | None = None,
    source=None,
    settings: dict | None = None,
    checker_square: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Write layers as PNG sequences, alpha videos, checkerboard previews, the background and a JSON manifest.

    Args:
        layers: an :class:`omnimatte_core.layers.Layers` (or any object with the same attributes):
            ``rgb [N,T,3,H,W]`` straight colour 0..1, ``alpha [N,T,1,H,W]`` 0..1, ``background [T,3,H,W]`` 0..1,
            ``order [T,N]`` front to back (optional), ``names`` (optional), ``fps``.
        out_dir: folder to write into (created if missing). The run goes to a new ``<prefix>_NNNN`` sub-folder.
        prefix: run-folder name prefix; only ``A-Z a-z 0-9 . _ -`` (``ValueError`` otherwise).
        formats: subset of ``("png", "prores", "webm", "preview")``; default every format this machine can write.
            Naming a format whose codec is missing raises ``RuntimeError`` before anything is written.
        source: where the layers came from (a path, or a dict), stored in the manifest.
        settings: JSON-serialisable settings of the run, stored in the manifest.
        checker_square: checkerboard square size in pixels for the previews.
        progress: ``progress(done, total)`` after each frame written.

    Returns:
        :class:`ExportResult` with the run folder, the manifest path and the written files (relative paths).
    """
    # 1. Check inputs (cheap, before any writing)
    check_prefix(prefix)
    rgb, alpha, background, order, names, fps = _check_layers(layers)
    rgb, alpha = clean_empty(rgb, alpha)
    chosen, skipped = _resolve_formats(formats)
    if settings is not None:
        try:
            json.dumps(_strict_json(settings), allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(f"settings must be JSON-serialisable: {error}") from error
    if not isinstance(checker_square, int) or checker_square < 1:
        raise ValueError(f"checker_square must be a positive integer, got {checker_square!r}")
    out = _prepare_out_dir(out_dir)

    n, t, _, h, w = rgb.shape
    preview_codec = _preview_codec() if "preview" in chosen else None
    alpha_formats = [f for f in chosen if f in ALPHA_VIDEO_FORMATS]
    per_stream = int("png" in chosen) + len(alpha_formats) + int(preview_codec is not None)
    total, done = (n + 1) * per_stream * t, 0

    def tick():
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    # 2. Write everything into a temporary folder inside out_dir (same file system, so the final rename is atomic)
    staging = Path(tempfile.mkdtemp(prefix=f".{prefix}_partial_", dir=out))
    files: dict[str, list[str]] = {}
    try:
        background_u8 = to_uint8(background)
        opaque = np.full((t, h, w, 1), 255, np.uint8)
        entries = []
        streams = [("background", "background", np.concatenate([background_u8, opaque], -1), None)]
        for i, name in enumerate(names):
            rgba = np.concatenate([to_uint8(rgb[i]), to_uint8(alpha[i])], -1)
            streams.append((f"{i:02d}_{_file_safe(name)}", name, rgba, i))
        for stem, name, rgba, index in streams:
            entry = {"name": name, "files": {}}
            if "png" in chosen:
                folder = Path("background") if index is None else Path("layers") / stem
                written = _write_png_sequence(staging / folder, stem if index is None else _file_safe(name),
                                              rgba if index is not None else rgba[..., :3], tick)
                entry["files"]["png"] = f"{folder.as_posix()}/{written[0].rsplit('_', 1)[0]}_%05d.png"
                files.setdefault("png", []).extend(f"{folder.as_posix()}/{x}" for x in written)
            for key in alpha_formats:
                fmt = ALPHA_VIDEO_FORMATS[key]
                rel = f"{stem}{fmt.suffix}"
                _write_video(staging / rel, rgba, fps, fmt.codec, fmt.pix_fmt, fmt.options, tick)
                entry["files"][key] = rel
                files.setdefault(key, []).append(rel)
            if preview_codec is not None:
                if index is None:
                    shown, rel = background_u8, "background.mp4"
                else:
                    over = alpha[index] * rgb[index] + (1 - alpha[index]) * checkerboard(h, w, checker_square)
                    shown, rel = to_uint8(over), f"{stem}_checker.mp4"
                _write_video(staging / rel, _pad_even(shown), fps, preview_codec, "yuv420p",
                             _preview_options(preview_codec), tick)
                entry["files"]["preview"] = rel
                files.setdefault("preview", []).append(rel)
            if index is not None:
                entry["index"] = index
                entries.append(entry)
            else:
                background_entry = entry["files"]

        # 3. The manifest
        order_names = None
        if order is not None:
            order_names = [[names[int(j)] for j in row] for row in torch.as_tensor(order).long().tolist()]
        manifest = {
            "format": "generative-omnimatte-layers",
            "version": 1,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "fps": fps,
            "width": w,
            "height": h,
            "frames": t,
            "alpha": "straight (not premultiplied), 8-bit in PNG; 0 (with colour 0) where it is below 1.5/255",
            "layers": entries,
            "order_front_to_back": order_names,
            "background": background_entry,
            "source": _strict_json(source) if isinstance(source, (dict, list, type(None))) else str(source),
            "settings": _strict_json(settings),
            "codecs": {
                **{k: {"codec": ALPHA_VIDEO_FORMATS[k].codec, "pix_fmt": ALPHA_VIDEO_FORMATS[k].pix_fmt}
                   for k in alpha_formats},
                **({"preview": {"codec": preview_codec, "pix_fmt": "yuv420p",
                                "padded_to_even": bool(h % 2 or w % 2)}} if preview_codec else {}),
            },
            "skipped_formats": skipped,
            "files": files,
        }
        try:
            text = json.dumps(manifest, indent=1, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(f"the manifest cannot be written as JSON (check source and settings): {error}") from error
        (staging / "manifest.json").write_text(text)

        # 4. Move the finished run to a run folder that does not exist yet (never replacing anything)
        final = _rename_to_fresh_run_folder(staging, out, prefix)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(folder=final, manifest=final / "manifest.json", files=files, skipped=skipped)


def _rename_to_fresh_run_folder(staging: Path, out: Path, prefix: str) -> Path:
    taken = [int(m.group(1)) for p in out.iterdir()
             if (m := re.fullmatch(re.escape(prefix) + r"_(\d{4,})", p.name))]
    number = max(taken, default=0) + 1
    for _ in range(1000):
        final = out / f"{prefix}_{number:04d}"
        if not final.exists() and not final.is_symlink():
            try:
                # On POSIX, rename replaces an *empty* folder created meanwhile (nothing is lost); a non-empty one
                # or (on Windows) any existing one raises, and we take the next number.
                os.rename(staging, final)
                return final
            except OSError as error:
                if not (isinstance(error, FileExistsError) or error.errno in _NAME_TAKEN):
                    # a real failure (permission, read-only or full disk, ...): say where, keep the cause
                    raise type(error)(error.errno, f"cannot move the finished run into {str(final)!r}: "
                                                   f"{error.strerror or error}", str(final)) from error
        number += 1
    raise FileExistsError(f"no free run folder name {prefix}_NNNN in {str(out)!r}")
