"""Where Casper's model files live under a ComfyUI-style ``models/`` folder, and finding them there.

    models/CogVideoX_Fun/<name>/   base model diffusers folders (also models/CogVideo/, models/diffusers/)
    models/casper/<file>.safetensors or models/casper/<folder>/   Casper transformer weights

Pure path logic (no ComfyUI import): the node layer passes ComfyUI's models folder(s) in.
"""
from __future__ import annotations

import json
from pathlib import Path

BASE_MODEL_FOLDERS = ("CogVideoX_Fun", "CogVideo", "diffusers")
CASPER_FOLDER = "casper"
_BASE_SUBFOLDERS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")


def is_inpaint_base_model(folder: Path) -> bool:
    """True when `folder` is a diffusers CogVideoX folder whose transformer takes the 33-channel inpaint input."""
    folder = Path(folder)
    if not all((folder / name).is_dir() for name in _BASE_SUBFOLDERS):
        return False
    try:
        config = json.loads((folder / "transformer" / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return config.get("_class_name") == "CogVideoXTransformer3DModel" and config.get("in_channels") == 33


def find_base_models(models_roots) -> list[Path]:
    """Base model folders (see `is_inpaint_base_model`) one level below ``<root>/{CogVideoX_Fun,CogVideo,diffusers}``.

    Args:
        models_roots: one models folder or several (paths); missing ones are skipped.
    """
    found = []
    for root in _as_paths(models_roots):
        for kind in BASE_MODEL_FOLDERS:
            parent = root / kind
            if parent.is_dir():
                found.extend(sorted(p for p in parent.iterdir() if p.is_dir() and is_inpaint_base_model(p)))
    return found


def find_casper_weights(models_roots) -> list[Path]:
    """Casper weights below ``<root>/casper``: ``.safetensors`` files and diffusers transformer folders."""
    found = []
    for root in _as_paths(models_roots):
        folder = root / CASPER_FOLDER
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix == ".safetensors":
                found.append(path)
            elif path.is_dir() and ((path / "config.json").is_file() or (path / "transformer/config.json").is_file()):
                found.append(path)
    return found


def _as_paths(models_roots) -> list[Path]:
    if isinstance(models_roots, (str, Path)):
        models_roots = [models_roots]
    return [Path(root) for root in models_roots]
