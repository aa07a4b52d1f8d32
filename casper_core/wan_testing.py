"""Tiny random Wan2.1-Fun-InP releases written in exactly the release's file layout (see `casper_core.wan_loading`).

Only widths and depths are tiny; what fixes the layout stays as released: 36 input channels, patch 1 × 2 × 2, the
image branch (1280-wide, 257 zero tokens), 512 text tokens, the VAE's 4 levels with 2 residual blocks and its latent
statistics, one relative-position table per UMT5 layer. Every file holds the original Wan key names, so the tests
go through the same renaming as the real files. The Casper weights come as a full transformer state dict (the 1.3B
release) and as a LoRA in the reference's format (the 14B release).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from . import wan_keys
from .testing import _round_up, randomize_, write_tokenizer
from .wan_loading import TOKENIZER_FOLDER

# The Wan2.1-Fun-1.3B-InP transformer config.json (original keys); 14B: dim 5120, ffn 13824, 40 heads, 40 layers.
RELEASE_1_3B_CONFIG = {
    "_class_name": "WanModel", "dim": 1536, "eps": 1e-06, "ffn_dim": 8960, "freq_dim": 256, "in_dim": 36,
    "model_type": "i2v", "num_heads": 12, "num_layers": 30, "out_dim": 16, "text_len": 512,
}
RELEASE_14B_CONFIG = {**RELEASE_1_3B_CONFIG, "dim": 5120, "ffn_dim": 13824, "num_heads": 40, "num_layers": 40}
TINY_TRANSFORMER_OVERRIDES = {"dim": 32, "ffn_dim": 64, "freq_dim": 32, "num_heads": 2, "num_layers": 2}
TINY_VAE_CONFIG = {"base_dim": 8, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
                   "temperal_downsample": [False, True, True], "dropout": 0.0}
TINY_T5_CONFIG = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4,
                  "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
                  "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "layer_norm_epsilon": 1e-6,
                  "dropout_rate": 0.0, "is_encoder_decoder": False, "use_cache": False, "tie_word_embeddings": False,
                  "pad_token_id": 0, "eos_token_id": 1}
LORA_RANK = 4


@dataclass(frozen=True)
class TinyWanRelease:
    """Paths of a tiny release written by `write_tiny_wan_release`."""

    base_dir: Path          # shaped like Wan2.1-Fun-1.3B-InP
    casper_weights: Path    # full transformer state dict (original keys)
    casper_lora: Path       # LoRA in the reference's lora_unet_ format


def tiny_transformer_config(text_dim: int, **overrides) -> dict:
    """The release's original transformer config with tiny widths."""
    return {**RELEASE_1_3B_CONFIG, **TINY_TRANSFORMER_OVERRIDES, "text_dim": text_dim, **overrides}


def random_transformer(original_config: dict, seed: int):
    """A `diffusers.WanTransformer3DModel` for an original config, with seeded random weights."""
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel.from_config(wan_keys.transformer_config_to_diffusers(original_config))
    return randomize_(model, seed).eval()


def original_transformer_state(model) -> dict[str, torch.Tensor]:
    """A diffusers Wan transformer's tensors under the original Wan names (contiguous CPU copies)."""
    return {wan_keys.transformer_key_to_original(k): v.detach().contiguous().clone()
            for k, v in model.state_dict().items()}


def write_tiny_wan_release(root, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> TinyWanRelease:
    """Write a tiny Wan2.1-Fun-InP folder, a full Casper state dict and a Casper LoRA under `root`."""
    from diffusers import AutoencoderKLWan
    from transformers import UMT5Config, UMT5EncoderModel

    root = Path(root)
    base = root / "Wan2.1-Fun-1.3B-InP"
    if base.exists():
        raise FileExistsError(f"write_tiny_wan_release: {base} already exists; pick an empty root")
    tokenizer = write_tokenizer(base / TOKENIZER_FOLDER)
    t5_config = {**TINY_T5_CONFIG, "vocab_size": _round_up(len(tokenizer), 8)}
    config = tiny_transformer_config(text_dim=t5_config["d_model"])
    (base / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    def cast(state):
        return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}

    save_file(cast(original_transformer_state(random_transformer(config, seed))),
              str(base / "diffusion_pytorch_model.safetensors"))
    vae = randomize_(AutoencoderKLWan(**TINY_VAE_CONFIG), seed + 100)
    vae_state = {wan_keys.vae_key_to_original(k, TINY_VAE_CONFIG["num_res_blocks"]): v.detach().clone()
                 for k, v in vae.state_dict().items()}
    save_file(cast(vae_state), str(base / "Wan2.1_VAE.safetensors"))  # as tools/convert_wan_release.py writes
    t5 = randomize_(UMT5EncoderModel(UMT5Config(**t5_config)), seed + 200)
    t5_state = {}
    for key, value in t5.state_dict().items():
        original = wan_keys.t5_key_to_original(key)
        if original is not None:
            t5_state[original] = value.detach().clone()
    save_file(cast(t5_state), str(base / "models_t5_umt5-xxl-enc-bf16.safetensors"))

    casper = root / "casper_wan2.1_fun_1.3b.safetensors"
    save_file(cast(original_transformer_state(random_transformer(config, seed + 1))), str(casper))
    lora = root / "casper_wan2.1_fun_14b_lora.safetensors"
    save_file(cast(random_lora(config, seed + 2)), str(lora))
    return TinyWanRelease(base_dir=base, casper_weights=casper, casper_lora=lora)


def random_lora(original_config: dict, seed: int, rank: int = LORA_RANK, alpha: float = 2.0) -> dict:
    """A LoRA in the reference's format on every attention and FFN linear layer of the blocks."""
    generator = torch.Generator().manual_seed(seed)
    dim, ffn = original_config["dim"], original_config["ffn_dim"]
    shapes = {"self_attn_q": (dim, dim), "self_attn_o": (dim, dim), "cross_attn_k": (dim, dim),
              "cross_attn_k_img": (dim, dim), "ffn_0": (ffn, dim), "ffn_2": (dim, ffn)}
    state = {}
    for block in range(original_config["num_layers"]):
        for name, (out_features, in_features) in shapes.items():
            module = f"{wan_keys.LORA_PREFIX}blocks_{block}_{name}"
            state[f"{module}.lora_down.weight"] = torch.randn(rank, in_features, generator=generator) / in_features
            state[f"{module}.lora_up.weight"] = torch.randn(out_features, rank, generator=generator) / rank
            state[f"{module}.alpha"] = torch.tensor(alpha)
    return state


_REFERENCE_STAND_INS = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def import_reference_wan(checkout):
    """For parity checks only: the public reference's Wan transformer, VAE (wrapper and core), T5 encoder and inpaint
    pipeline classes, imported from a local checkout as its own package without touching ``sys.path``. Its
    torchvision import (CLIP preprocessing of a black picture whose features it then zeroes) gets a minimal
    ``to_tensor`` stand-in for the duration of the import only."""
    import importlib.util
    import sys
    import types

    import diffusers.pipelines.pipeline_utils  # noqa: F401  (their torchvision probes run before the stand-ins exist)
    import numpy as np
    import transformers  # noqa: F401

    package_dir = Path(checkout) / "videox_fun"
    stand_ins = {name: types.ModuleType(name) for name in _REFERENCE_STAND_INS}
    stand_ins["torchvision.transforms.functional"].to_tensor = (
        lambda image: torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255)
    stand_ins["torchvision"].transforms = stand_ins["torchvision.transforms"]
    stand_ins["torchvision.transforms"].functional = stand_ins["torchvision.transforms.functional"]
    previous = {name: sys.modules.get(name) for name in _REFERENCE_STAND_INS}
    sys.modules.update(stand_ins)
    try:
        if "videox_fun" not in sys.modules:
            spec = importlib.util.spec_from_file_location(
                "videox_fun", package_dir / "__init__.py", submodule_search_locations=[str(package_dir)])
            package = importlib.util.module_from_spec(spec)
            sys.modules["videox_fun"] = package
            spec.loader.exec_module(package)
        from videox_fun.models.wan_text_encoder import WanT5EncoderModel
        from videox_fun.models.wan_transformer3d import WanTransformer3DModel
        from videox_fun.models.wan_vae import AutoencoderKLWan, AutoencoderKLWan_
        from videox_fun.pipeline.pipeline_wan_fun_inpaint import WanFunInpaintPipeline
    finally:
        for name, module in previous.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return WanTransformer3DModel, AutoencoderKLWan, AutoencoderKLWan_, WanT5EncoderModel, WanFunInpaintPipeline
