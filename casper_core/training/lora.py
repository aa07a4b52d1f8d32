"""LoRA on the Casper transformer (peft), and merging it into plain weights for export.

Adapters are injected with diffusers' own peft integration (`add_adapter`), so the model stays a diffusers
`CogVideoXTransformer3DModel`. The merge works on a state dict alone — ``W + (alpha / r) · B A`` for every adapted
layer — so it also works on a state dict gathered from several processes.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

ADAPTER = "default"


def add_lora(transformer, rank: int, alpha: int, targets) -> dict:
    """Freeze `transformer` and add trainable LoRA adapters (float32) to the modules named in `targets`.

    Returns the adapter config as a dict (stored beside exported adapters).
    """
    try:
        from peft import LoraConfig
    except ImportError as error:  # the optional "train" extra
        raise ImportError("LoRA training needs peft: pip install 'comfyui-generative-omnimatte[train]'") from error
    transformer.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=True)
    transformer.add_adapter(config, adapter_name=ADAPTER)
    names = [name for name, _ in transformer.named_parameters() if ".lora_" in name]
    if not names:
        raise ValueError(f"lora_targets {list(targets)}: no module of the transformer matched")
    for name, param in transformer.named_parameters():
        if ".lora_" in name:
            param.data = param.data.float()
            param.requires_grad_(True)
    return {"r": rank, "lora_alpha": alpha, "target_modules": list(targets), "peft_type": "LORA"}


def split_lora_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """``(base weights with plain keys, adapter tensors with adapter-free keys)`` of a peft-injected state dict.

    ``x.base_layer.weight`` → ``x.weight``; ``x.lora_A.default.weight`` → ``x.lora_A.weight`` (peft's saved form).
    """
    base, adapters = {}, {}
    for key, value in state.items():
        if ".lora_" in key:
            adapters[key.replace(f".{ADAPTER}.", ".")] = value
        else:
            base[key.replace(".base_layer.", ".")] = value
    return base, adapters


def merged_state_dict(state: dict[str, torch.Tensor], alpha: float, rank: int,
                      dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Plain transformer weights with every LoRA merged in (``W + alpha / rank · B @ A``), keys as the base model's.

    A state dict without adapters is returned with plain keys, unchanged otherwise. `dtype` casts the result.
    """
    base, adapters = split_lora_state_dict(state)
    scaling = alpha / rank
    for key in adapters:
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[: -len(".lora_A.weight")]
        weight_key = f"{module}.weight"
        down, up = adapters[key].float(), adapters[f"{module}.lora_B.weight"].float()
        weight = base[weight_key]
        base[weight_key] = (weight.float() + scaling * (up @ down)).to(weight.dtype)
    if dtype is not None:
        base = {k: v.to(dtype) if v.is_floating_point() else v for k, v in base.items()}
    return {k: v.detach().cpu().contiguous() for k, v in base.items()}


def save_lora(state: dict[str, torch.Tensor], config: dict, folder) -> Path:
    """Write the adapters of `state` as ``adapter_model.safetensors`` + ``adapter_config.json`` (peft's names)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=False)
    _, adapters = split_lora_state_dict(state)
    if not adapters:
        raise ValueError("save_lora: the state dict holds no LoRA tensors")
    save_file({f"transformer.{k}": v.detach().cpu().contiguous() for k, v in adapters.items()},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=1) + "\n")
    return folder
