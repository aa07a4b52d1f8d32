"""Training checkpoints: the Casper ``.safetensors`` inference loads, the LoRA, and the state to resume from.

A checkpoint folder ``<run>/checkpoints/step_000100/`` holds:

- ``casper_transformer.safetensors``: the full transformer state dict in bf16 (LoRA merged in), the format
  `casper_core.loading` reads as ``casper_weights`` (Load Casper Model's ``casper_weights``);
- ``lora/adapter_model.safetensors`` + ``adapter_config.json`` (LoRA runs only);
- ``state/``: what `accelerate` needs to resume (optimizer, learning-rate schedule, RNG states) plus our
  ``trainable.safetensors`` (only the trained parameters: a LoRA run does not store the frozen 5 B base again);
- ``training_state.json``: the step reached and the config.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .lora import merged_state_dict, save_lora

CASPER_FILE = "casper_transformer.safetensors"
TRAINABLE_FILE = "trainable.safetensors"
STATE_FILE = "training_state.json"


def export_casper_weights(state: dict[str, torch.Tensor], path, *, lora: dict | None = None,
                          dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write the transformer state dict (LoRA merged when `lora` gives its ``r`` and ``lora_alpha``) as a Casper
    ``.safetensors``; refuses to overwrite."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; checkpoints are never overwritten")
    if lora is not None:
        plain = merged_state_dict(state, lora["lora_alpha"], lora["r"], dtype)
    else:
        plain = {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in state.items()}
    save_file(plain, str(path), metadata={"format": "pt", "content": "casper transformer state dict"})
    return path


def write_checkpoint(folder, state: dict[str, torch.Tensor], step: int, config: dict, lora: dict | None) -> Path:
    """Write the exported weights (and LoRA) of a checkpoint into `folder` (created; must not exist)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    export_casper_weights(state, folder / CASPER_FILE, lora=lora)
    if lora is not None:
        save_lora(state, lora, folder / "lora")
    (folder / STATE_FILE).write_text(json.dumps({"step": step, "config": config}, indent=1) + "\n")
    return folder


def read_step(folder) -> int:
    """The step a checkpoint folder was written at."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"resume: {folder} has no {STATE_FILE}; expected a checkpoint folder "
                                "<run>/checkpoints/step_NNNNNN")
    return int(json.loads(path.read_text())["step"])


def save_trainable(model: torch.nn.Module, folder) -> None:
    """Save only the parameters being trained (float32) into ``folder/trainable.safetensors``."""
    tensors = {name: param.detach().float().cpu().contiguous()
               for name, param in model.named_parameters() if param.requires_grad}
    save_file(tensors, str(Path(folder) / TRAINABLE_FILE))


def load_trainable(model: torch.nn.Module, folder) -> None:
    """Load ``folder/trainable.safetensors`` into the trained parameters of `model` (all must be present)."""
    tensors = load_file(str(Path(folder) / TRAINABLE_FILE))
    params = {name: param for name, param in model.named_parameters() if param.requires_grad}
    missing = sorted(set(params) - set(tensors))
    if missing:
        raise ValueError(f"resume: {folder}/{TRAINABLE_FILE} lacks {len(missing)} trained parameters, e.g. "
                         f"{missing[:3]}; was it written by a run with another mode or LoRA setting?")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[name].to(param.dtype))
