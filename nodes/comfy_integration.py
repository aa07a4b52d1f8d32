"""Every point where the pack touches ComfyUI, each with a fallback for running without it.

Progress bar (with preview images), interrupt check, torch device, memory release between stages, model folders and
the output folder. Nothing here is imported from ComfyUI at module level, so the pack (and its tests) import with or
without ComfyUI installed; inside ComfyUI every helper uses ComfyUI's own machinery.
"""
from __future__ import annotations

import gc
import importlib
import os
from pathlib import Path

import torch

from ..casper_core.release_format import BASE_MODEL_ID, BASE_MODEL_NAME, CASPER_WEIGHTS_NAME

# Where ComfyUI users already keep CogVideoX(-Fun) and Wan2.1-Fun (VideoX-Fun's "Fun_Models") base models, and our own
# folder for the Casper transformer. The command line takes the two paths directly, so this module is the one place
# that lists and resolves model folders.
BASE_MODEL_FOLDER_NAMES = ("CogVideoX_Fun", "CogVideo", "diffusers", "Fun_Models")
CASPER_FOLDER_NAME = "casper"
CASPER_WEIGHT_EXTENSIONS = {".safetensors"}


def _comfy(module: str):
    """ComfyUI's module ``module`` (e.g. ``comfy.utils``) or None when ComfyUI is not importable."""
    try:
        return importlib.import_module(module)
    except Exception:  # noqa: BLE001 — any failure means "not inside a working ComfyUI"
        return None


# --------------------------------------------------------------------------------------------------------------------
# Interrupt, device, memory


class Interrupted(RuntimeError):
    """Raised by :func:`check_interrupt` outside ComfyUI when :func:`request_interrupt` was called (tests)."""


_local_interrupt = False


def request_interrupt(flag: bool = True) -> None:
    """Outside ComfyUI: make the next :func:`check_interrupt` raise (inside ComfyUI the Cancel button does this)."""
    global _local_interrupt
    _local_interrupt = flag


def check_interrupt() -> None:
    """Raise if the user cancelled the run. Called once per sampling step / fitting iteration / exported frame.

    Inside ComfyUI this raises ComfyUI's own ``InterruptProcessingException``, which the executor treats as a clean
    cancel rather than an error.
    """
    mm = _comfy("comfy.model_management")
    if mm is not None and hasattr(mm, "throw_exception_if_processing_interrupted"):
        mm.throw_exception_if_processing_interrupted()
        return
    if mm is not None and getattr(mm, "processing_interrupted", lambda: False)():
        raise Interrupted("processing interrupted")
    global _local_interrupt
    if _local_interrupt:
        _local_interrupt = False
        raise Interrupted("processing interrupted")


def torch_device() -> torch.device:
    """The device ComfyUI computes on (respects ``--cpu`` and friends); outside ComfyUI CUDA when available."""
    mm = _comfy("comfy.model_management")
    if mm is not None and hasattr(mm, "get_torch_device"):
        return torch.device(mm.get_torch_device())
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def free_memory() -> None:
    """Release cached accelerator memory between stages (Casper → fit → full-res fit)."""
    gc.collect()
    mm = _comfy("comfy.model_management")
    if mm is not None and hasattr(mm, "soft_empty_cache"):
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------------------------
# Progress


class Progress:
    """A progress reporter shaped like the cores' callbacks: ``progress(step, total, preview=None)``.

    Inside ComfyUI it drives ``comfy.utils.ProgressBar`` (the bar on the node and in the queue) and sends ``preview``
    (an ``[H,W,3]`` float image in 0..1) as the node's live preview; everywhere it checks for an interrupt first, so a
    cancelled run stops within one step. ``calls`` counts reports (used by tests).
    """

    def __init__(self, total: int):
        self.total = max(int(total), 1)
        self.calls = 0
        self.last_preview = None
        utils = _comfy("comfy.utils")
        self._bar = utils.ProgressBar(self.total) if utils is not None and hasattr(utils, "ProgressBar") else None

    def __call__(self, step: int, total: int | None = None, preview: torch.Tensor | None = None) -> None:
        check_interrupt()
        self.calls += 1
        if total is not None and int(total) != self.total:
            self.total = max(int(total), 1)
        image = _preview_for_comfy(preview) if preview is not None else None
        if preview is not None:
            self.last_preview = preview
        if self._bar is not None:
            self._bar.update_absolute(int(step), self.total, image)

    def simple(self, done: int, total: int) -> None:
        """Two-argument form (export callbacks)."""
        self(done, total)


def _preview_for_comfy(preview: torch.Tensor):
    """``[H,W,3]`` float 0..1 → the ``("JPEG", PIL.Image, max_size)`` tuple ComfyUI's preview sender expects."""
    try:
        from PIL import Image
    except ImportError:
        return None
    array = (preview.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype("uint8")
    return ("JPEG", Image.fromarray(array), 512)


# --------------------------------------------------------------------------------------------------------------------
# Folders


def _folder_paths():
    return _comfy("folder_paths")


def models_dir() -> Path:
    """ComfyUI's ``models/`` folder; outside ComfyUI ``$COMFYUI_MODELS_DIR`` or ``./models``."""
    fp = _folder_paths()
    if fp is not None and hasattr(fp, "models_dir"):
        return Path(fp.models_dir)
    return Path(os.environ.get("COMFYUI_MODELS_DIR", "models"))


def register_model_folders() -> None:
    """Register our model folders with ComfyUI (idempotent), so ``extra_model_paths.yaml`` entries work too.

    ``casper`` holds the Casper transformer; ``CogVideoX_Fun``/``CogVideo``/``diffusers`` may already be registered by
    other packs (or ComfyUI itself for ``diffusers``) — then we only add the default path if it is missing.
    """
    fp = _folder_paths()
    if fp is None or not hasattr(fp, "folder_names_and_paths"):
        return
    root = Path(fp.models_dir)
    for name in (*BASE_MODEL_FOLDER_NAMES, CASPER_FOLDER_NAME):
        default = str(root / name)
        extensions = CASPER_WEIGHT_EXTENSIONS if name == CASPER_FOLDER_NAME else set()
        entry = fp.folder_names_and_paths.get(name)
        if entry is None:
            fp.folder_names_and_paths[name] = ([default], set(extensions))
        elif default not in entry[0]:
            entry[0].append(default)


def folder_roots(name: str) -> list[Path]:
    """Every folder registered under ``name`` (e.g. ``"casper"``), existing or not."""
    fp = _folder_paths()
    if fp is not None and hasattr(fp, "get_folder_paths"):
        try:
            return [Path(p) for p in fp.get_folder_paths(name)]
        except Exception:  # noqa: BLE001 — not registered
            pass
    return [models_dir() / name]


# What Load Casper Model needs, said the same way by every missing-model message (the README's 'Model files').
BASE_MODEL_DEFAULT = f"{BASE_MODEL_FOLDER_NAMES[0]}/{BASE_MODEL_NAME}"
CASPER_WEIGHTS_SOURCE = ("the CogVideoX-Fun-V1.5 Casper transformer, a .safetensors file linked under 'Casper model "
                         "weights' in github.com/gen-omnimatte/gen-omnimatte-public")


def missing_models_message(problem: str = "") -> str:
    """A missing-model error: what is wrong, then both files Casper needs, where each goes and where it comes from."""
    lines = [problem] if problem else []
    lines += [
        "Load Casper Model needs two model files (nothing is downloaded):",
        f"1. the base model: the whole diffusers folder of {BASE_MODEL_ID} (Hugging Face; transformer/, vae/, "
        f"text_encoder/, tokenizer/, scheduler/) → ComfyUI/models/{BASE_MODEL_DEFAULT}/ "
        f"(models/{BASE_MODEL_FOLDER_NAMES[1]}/ and models/{BASE_MODEL_FOLDER_NAMES[2]}/ are searched too);",
        f"2. the Casper weights: {CASPER_WEIGHTS_SOURCE} → ComfyUI/models/{CASPER_FOLDER_NAME}/"
        f"{CASPER_WEIGHTS_NAME}.",
        "Then refresh the node definitions (press R, or reload the page) and pick them in Load Casper Model. "
        "See the README, 'Model files'.",
    ]
    return "\n".join(lines)


def _entries(folder_name: str, accept) -> list[str]:
    """Names of the children of every ``folder_name`` root that ``accept(path)``, root by root, each sorted."""
    found = []
    for root in folder_roots(folder_name):
        if root.is_dir():
            found += [child.name for child in sorted(root.iterdir()) if accept(child)]
    return found


def _locate(folder_name: str, name: str, accept, problem) -> Path:
    """The first ``root / name`` of the ``folder_name`` roots that ``accept(path)``; else ``FileNotFoundError``
    with ``problem(where)`` (``where``: the roots searched) and what Casper needs."""
    for root in folder_roots(folder_name):
        if accept(root / name):
            return root / name
    where = ", ".join(str(r) for r in folder_roots(folder_name))
    raise FileNotFoundError(missing_models_message(problem(where)))


def _is_base_model(path: Path) -> bool:
    # a diffusers folder (CogVideoX-Fun) or a Wan2.1-Fun-InP release folder (transformer config at its top)
    return path.is_dir() and ((path / "transformer").is_dir() or (path / "config.json").is_file())


def _is_casper_weights(path: Path) -> bool:
    """A ``.safetensors`` file, or a diffusers transformer folder (``config.json`` in it or in ``transformer/``)."""
    if path.is_file():
        return path.suffix.lower() in CASPER_WEIGHT_EXTENSIONS
    return path.is_dir() and ((path / "config.json").is_file() or (path / "transformer" / "config.json").is_file())


def list_base_models() -> list[str]:
    """Base model folders as ``<folder name>/<model name>`` for the dropdown (inpaint CogVideoX folders first)."""
    found = [f"{folder_name}/{name}" for folder_name in BASE_MODEL_FOLDER_NAMES
             for name in _entries(folder_name, _is_base_model)]
    return sorted(set(found), key=found.index)


def resolve_base_model(choice: str) -> Path:
    """The folder of a ``<folder name>/<model name>`` dropdown choice (``FileNotFoundError`` if absent)."""
    folder_name, _, model = str(choice).partition("/")
    if folder_name not in BASE_MODEL_FOLDER_NAMES or not model or "/" in model or model in (".", ".."):
        raise ValueError(f"base_model must be '<{'|'.join(BASE_MODEL_FOLDER_NAMES)}>/<model folder>', got {choice!r}")
    return _locate(folder_name, model, Path.is_dir,
                   lambda where: f"base_model {choice!r}: no folder {model!r} under {where}.")


def list_casper_weights() -> list[str]:
    """Casper weights under ``models/casper/``: ``.safetensors`` files and diffusers transformer folders."""
    return sorted(set(_entries(CASPER_FOLDER_NAME, _is_casper_weights)))


def resolve_casper_weights(choice: str) -> Path:
    name = str(choice)
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"casper_weights must be a file or folder name inside models/casper/, got {choice!r}")
    return _locate(CASPER_FOLDER_NAME, name, Path.exists, lambda where: f"casper_weights {choice!r} is not in {where}.")


def output_dir() -> Path:
    """ComfyUI's output folder; outside ComfyUI ``$COMFYUI_OUTPUT_DIR`` or ``./output``."""
    fp = _folder_paths()
    if fp is not None and hasattr(fp, "get_output_directory"):
        return Path(fp.get_output_directory())
    return Path(os.environ.get("COMFYUI_OUTPUT_DIR", "output"))


# --------------------------------------------------------------------------------------------------------------------
# Optional dependencies


class MissingDependency(ImportError):
    """An optional library a node needs is not installed; the message says what to install."""


def require(module: str, pip_name: str | None = None, node: str = "this node"):
    """Import ``module`` when a node first runs; a missing one disables only that node, with an install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = pip_name or module.split(".")[0]
        raise MissingDependency(
            f"{node} needs the Python package '{package}' ({error}). Install it into ComfyUI's Python environment: "
            f"python -m pip install {package}") from error
