"""Tensor names and configs of the Wan2.1-Fun release files, mapped onto diffusers' and transformers' Wan classes.

The Wan2.1-Fun-InP releases (and the Casper weights fine-tuned from them) store every component under the original
Wan model's tensor names:

- transformer: ``config.json`` (``dim``, ``num_heads``, ``in_dim`` … of the original ``WanModel``) and
  ``diffusion_pytorch_model*.safetensors`` with keys such as ``blocks.0.self_attn.q.weight``;
- VAE: ``Wan2.1_VAE.pth`` (read as its ``.safetensors`` conversion), keys such as ``encoder.downsamples.0.residual.0.gamma``, no config;
- text encoder: ``models_t5_umt5-xxl-enc-bf16.pth`` (likewise), keys such as ``blocks.0.attn.q.weight``, no config.

We run them on `diffusers.WanTransformer3DModel`, `diffusers.AutoencoderKLWan` and
`transformers.UMT5EncoderModel`, which compute the same functions under other module names. Each mapping here is a
one-to-one renaming (no tensor is split, merged or changed), so it also runs backwards (used to write test releases).
Configs that the release does not ship are read off the tensors' shapes.
"""
from __future__ import annotations

import re

import torch

# --- transformer -----------------------------------------------------------------------------------------------

# (original prefix, diffusers prefix): a key that starts with the one starts with the other, the rest (``weight``,
# ``bias``) unchanged; ``{n}`` stands for a block index. A prefix without a trailing dot is a whole key.
_TRANSFORMER_PREFIXES = (
    ("patch_embedding.", "patch_embedding."),
    ("text_embedding.0.", "condition_embedder.text_embedder.linear_1."),
    ("text_embedding.2.", "condition_embedder.text_embedder.linear_2."),
    ("time_embedding.0.", "condition_embedder.time_embedder.linear_1."),
    ("time_embedding.2.", "condition_embedder.time_embedder.linear_2."),
    ("time_projection.1.", "condition_embedder.time_proj."),
    ("img_emb.proj.0.", "condition_embedder.image_embedder.norm1."),
    ("img_emb.proj.1.", "condition_embedder.image_embedder.ff.net.0.proj."),
    ("img_emb.proj.3.", "condition_embedder.image_embedder.ff.net.2."),
    ("img_emb.proj.4.", "condition_embedder.image_embedder.norm2."),
    ("head.head.", "proj_out."),
    ("head.modulation", "scale_shift_table"),
    ("blocks.{n}.modulation", "blocks.{n}.scale_shift_table"),
    ("blocks.{n}.self_attn.q.", "blocks.{n}.attn1.to_q."),
    ("blocks.{n}.self_attn.k.", "blocks.{n}.attn1.to_k."),
    ("blocks.{n}.self_attn.v.", "blocks.{n}.attn1.to_v."),
    ("blocks.{n}.self_attn.o.", "blocks.{n}.attn1.to_out.0."),
    ("blocks.{n}.self_attn.norm_q.", "blocks.{n}.attn1.norm_q."),
    ("blocks.{n}.self_attn.norm_k.", "blocks.{n}.attn1.norm_k."),
    ("blocks.{n}.cross_attn.q.", "blocks.{n}.attn2.to_q."),
    ("blocks.{n}.cross_attn.k.", "blocks.{n}.attn2.to_k."),
    ("blocks.{n}.cross_attn.v.", "blocks.{n}.attn2.to_v."),
    ("blocks.{n}.cross_attn.o.", "blocks.{n}.attn2.to_out.0."),
    ("blocks.{n}.cross_attn.norm_q.", "blocks.{n}.attn2.norm_q."),
    ("blocks.{n}.cross_attn.norm_k.", "blocks.{n}.attn2.norm_k."),
    ("blocks.{n}.cross_attn.k_img.", "blocks.{n}.attn2.add_k_proj."),
    ("blocks.{n}.cross_attn.v_img.", "blocks.{n}.attn2.add_v_proj."),
    ("blocks.{n}.cross_attn.norm_k_img.", "blocks.{n}.attn2.norm_added_k."),
    # The original's norm3 is the (affine) norm before cross-attention, diffusers' norm2; the norms before
    # self-attention and the FFN have no parameters on either side.
    ("blocks.{n}.norm3.", "blocks.{n}.norm2."),
    ("blocks.{n}.ffn.0.", "blocks.{n}.ffn.net.0.proj."),
    ("blocks.{n}.ffn.2.", "blocks.{n}.ffn.net.2."),
)
_DIFFUSERS_MARKERS = ("condition_embedder.", "scale_shift_table", "proj_out.")


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(re.escape("{n}"), r"(?P<n>\d+)")
    return re.compile(pattern + (r"(?P<rest>.+)" if template.endswith(".") else r"(?P<rest>)"))


def _rename(key: str, pairs, reverse: bool = False) -> str | None:
    for source, target in pairs:
        if reverse:
            source, target = target, source
        match = _template_regex(source).fullmatch(key)
        if match:
            return target.replace("{n}", match.groupdict().get("n") or "") + match.group("rest")
    return None


def transformer_key_to_diffusers(key: str) -> str | None:
    """The diffusers `WanTransformer3DModel` name of an original Wan transformer tensor (None if unknown)."""
    return _rename(key, _TRANSFORMER_PREFIXES)


def transformer_key_to_original(key: str) -> str | None:
    """The original Wan name of a diffusers `WanTransformer3DModel` tensor (None if unknown)."""
    return _rename(key, _TRANSFORMER_PREFIXES, reverse=True)


def is_diffusers_transformer_state(keys) -> bool:
    """True when the state dict's keys are diffusers' names (a Casper file saved from diffusers)."""
    return any(key.startswith(_DIFFUSERS_MARKERS) or ".attn1." in key for key in keys)


def transformer_state_to_diffusers(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename an original-layout transformer state dict; returns (renamed tensors, keys with no mapping)."""
    if is_diffusers_transformer_state(state):
        return dict(state), []
    renamed, unknown = {}, []
    for key, value in state.items():
        new_key = transformer_key_to_diffusers(key)
        if new_key is None:
            unknown.append(key)
        else:
            renamed[new_key] = value
    return renamed, sorted(unknown)


def transformer_config_to_diffusers(config: dict) -> dict:
    """A `diffusers.WanTransformer3DModel` config from the original ``config.json`` of a Wan(-Fun) transformer.

    Keys the release omits take the original code's defaults (patch 1×2×2, text width 4096, cross-attention norm,
    q/k RMS norm). ``model_type "i2v"`` (every Fun-InP model) adds the CLIP image branch: a 1280-wide image embedding
    and separate image keys and values in every cross-attention.
    """
    if "num_attention_heads" in config:  # already a diffusers config
        return {key: value for key, value in config.items() if not key.startswith("_")}
    missing = [key for key in ("dim", "num_heads", "num_layers", "ffn_dim") if key not in config]
    if missing:
        raise ValueError(f"transformer config: lacks {missing}; expected a Wan config.json (dim, num_heads, …)")
    dim, heads = int(config["dim"]), int(config["num_heads"])
    if dim % heads or (dim // heads) % 2:
        raise ValueError(f"transformer config: dim {dim} / num_heads {heads} must give an even head width")
    image = config.get("model_type", "t2v") == "i2v"
    return {
        "patch_size": list(config.get("patch_size", (1, 2, 2))),
        "num_attention_heads": heads,
        "attention_head_dim": dim // heads,
        "in_channels": int(config.get("in_dim", config.get("in_channels", 16))),
        "out_channels": int(config.get("out_dim", 16)),
        "text_dim": int(config.get("text_dim", 4096)),
        "freq_dim": int(config.get("freq_dim", 256)),
        "ffn_dim": int(config["ffn_dim"]),
        "num_layers": int(config["num_layers"]),
        "cross_attn_norm": bool(config.get("cross_attn_norm", True)),
        "qk_norm": "rms_norm_across_heads" if config.get("qk_norm", True) else None,
        "eps": float(config.get("eps", 1e-6)),
        "image_dim": 1280 if image else None,
        "added_kv_proj_dim": dim if image else None,
    }


# --- LoRA (the reference's format: lora_unet_<module path with _>.lora_down/.lora_up/.alpha) ---------------------

LORA_PREFIX = "lora_unet_"


def is_lora_state(keys) -> bool:
    """True when the state dict is a LoRA (``…lora_down.weight`` / ``…lora_up.weight`` pairs)."""
    return any(".lora_down." in key or ".lora_up." in key for key in keys)


def lora_updates(lora: dict[str, torch.Tensor], original_weight_keys, scale: float = 1.0):
    """Weight updates ``{original weight key: scale · alpha/rank · up @ down}`` (float32) of a LoRA state dict.

    `original_weight_keys` are the transformer's ``….weight`` names in the original layout; a LoRA module name is
    ``lora_unet_`` + that name without ``.weight``, dots written as underscores (as the reference names them). The
    reference merges the same product into the weights (``merge_lora``; alpha defaults to the rank).

    Raises ValueError naming LoRA modules that match no transformer weight.
    """
    lookup = {LORA_PREFIX + key[: -len(".weight")].replace(".", "_"): key for key in original_weight_keys
              if key.endswith(".weight")}
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in lora.items():
        module, _, part = key.partition(".")
        modules.setdefault(module, {})[part] = value
    unknown = sorted(name for name in modules if name not in lookup)
    if unknown:
        raise ValueError(f"LoRA: {len(unknown)} module(s) match no transformer weight, e.g. {unknown[:3]}; expected "
                         f"names like {LORA_PREFIX}blocks_0_self_attn_q")
    updates = {}
    for name, parts in modules.items():
        if "lora_up.weight" not in parts or "lora_down.weight" not in parts:
            raise ValueError(f"LoRA: module {name} lacks lora_up.weight or lora_down.weight (has {sorted(parts)})")
        up = parts["lora_up.weight"].float().flatten(1)
        down = parts["lora_down.weight"].float().flatten(1)
        rank = up.shape[1]
        alpha = float(parts["alpha"]) if "alpha" in parts else float(rank)
        updates[lookup[name]] = (scale * alpha / rank) * (up @ down)
    return updates


# --- VAE -------------------------------------------------------------------------------------------------------

_RESIDUAL_PARTS = {
    "residual.0.gamma": "norm1.gamma",
    "residual.2.weight": "conv1.weight",
    "residual.2.bias": "conv1.bias",
    "residual.3.gamma": "norm2.gamma",
    "residual.6.weight": "conv2.weight",
    "residual.6.bias": "conv2.bias",
    "shortcut.weight": "conv_shortcut.weight",
    "shortcut.bias": "conv_shortcut.bias",
}
_TOP_LEVEL_VAE = {"conv1": "quant_conv", "conv2": "post_quant_conv"}
_CODER_ENDS = {"conv1": "conv_in", "head.0": "norm_out", "head.2": "conv_out"}


def vae_key_to_diffusers(key: str, num_res_blocks: int = 2, levels: int = 4) -> str | None:
    """The diffusers `AutoencoderKLWan` name of an original Wan VAE tensor (None if unknown).

    The decoder's flat ``upsamples`` list holds, per level, ``num_res_blocks + 1`` residual blocks and (except the
    last level) one resample; diffusers groups them as ``up_blocks.<level>.resnets.<k>`` / ``.upsamplers.0``.
    """
    parts = key.split(".")
    if parts[0] in _TOP_LEVEL_VAE and len(parts) == 2:
        return f"{_TOP_LEVEL_VAE[parts[0]]}.{parts[1]}"
    if parts[0] not in ("encoder", "decoder") or len(parts) < 3:
        return None
    coder, rest = parts[0], ".".join(parts[1:])
    for original, new in _CODER_ENDS.items():
        if rest.startswith(original + "."):
            return f"{coder}.{new}.{rest[len(original) + 1:]}"
    if parts[1] == "middle":
        index, tail = int(parts[2]), ".".join(parts[3:])
        if index == 1:
            return f"{coder}.mid_block.attentions.0.{tail}"
        return f"{coder}.mid_block.resnets.{index // 2}.{_RESIDUAL_PARTS.get(tail, tail)}"
    if coder == "encoder" and parts[1] == "downsamples":
        tail = ".".join(parts[3:])
        return f"encoder.down_blocks.{parts[2]}.{_RESIDUAL_PARTS.get(tail, tail)}"
    if coder == "decoder" and parts[1] == "upsamples":
        index, tail = int(parts[2]), ".".join(parts[3:])
        per_level = num_res_blocks + 2
        level, position = divmod(index, per_level)
        if level >= levels:
            return None
        if position <= num_res_blocks:
            return f"decoder.up_blocks.{level}.resnets.{position}.{_RESIDUAL_PARTS.get(tail, tail)}"
        return f"decoder.up_blocks.{level}.upsamplers.0.{tail}"
    return None


def vae_key_to_original(key: str, num_res_blocks: int = 2) -> str | None:
    """The original Wan VAE name of a diffusers `AutoencoderKLWan` tensor (inverse of `vae_key_to_diffusers`)."""
    inverse_parts = {new: old for old, new in _RESIDUAL_PARTS.items()}
    parts = key.split(".")
    top = {new: old for old, new in _TOP_LEVEL_VAE.items()}
    if parts[0] in top and len(parts) == 2:
        return f"{top[parts[0]]}.{parts[1]}"
    if parts[0] not in ("encoder", "decoder") or len(parts) < 3:
        return None
    coder, rest = parts[0], ".".join(parts[1:])
    for original, new in _CODER_ENDS.items():
        if rest.startswith(new + "."):
            return f"{coder}.{original}.{rest[len(new) + 1:]}"
    if parts[1] == "mid_block":
        tail = ".".join(parts[4:])
        if parts[2] == "attentions":
            return f"{coder}.middle.1.{tail}"
        return f"{coder}.middle.{2 * int(parts[3])}.{inverse_parts.get(tail, tail)}"
    if coder == "encoder" and parts[1] == "down_blocks":
        tail = ".".join(parts[3:])
        return f"encoder.downsamples.{parts[2]}.{inverse_parts.get(tail, tail)}"
    if coder == "decoder" and parts[1] == "up_blocks":
        level, kind, position = int(parts[2]), parts[3], int(parts[4])
        tail = ".".join(parts[5:])
        base = level * (num_res_blocks + 2)
        if kind == "resnets":
            return f"decoder.upsamples.{base + position}.{inverse_parts.get(tail, tail)}"
        return f"decoder.upsamples.{base + num_res_blocks + 1}.{tail}"
    return None


def vae_state_to_diffusers(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict, list[str]]:
    """Rename an original Wan VAE state dict; returns (renamed tensors, diffusers config, keys with no mapping).

    The config is read off the tensors: base width from ``encoder.conv1``, latent channels from ``conv2``, residual
    blocks per level from the encoder's ``downsamples`` count; the rest is the Wan 2.1 VAE's (width multipliers
    1, 2, 4, 4, temporal downsampling in the last two levels, no attention outside the middle blocks).
    """
    if "encoder.conv_in.weight" in state:  # already diffusers' names
        raise ValueError("VAE: the tensors already have diffusers' names; load the vae/ folder instead")
    for needed in ("encoder.conv1.weight", "conv2.weight"):
        if needed not in state:
            raise ValueError(f"VAE: no tensor {needed!r}; expected the original Wan 2.1 VAE (Wan2.1_VAE.pth)")
    levels = 4
    downsample_entries = {int(key.split(".")[2]) for key in state if key.startswith("encoder.downsamples.")}
    num_res_blocks = (len(downsample_entries) - (levels - 1)) // levels
    config = {
        "base_dim": int(state["encoder.conv1.weight"].shape[0]),
        "z_dim": int(state["conv2.weight"].shape[0]),
        "dim_mult": [1, 2, 4, 4],
        "num_res_blocks": num_res_blocks,
        "attn_scales": [],
        "temperal_downsample": [False, True, True],
        "dropout": 0.0,
    }
    renamed, unknown = {}, []
    for key, value in state.items():
        new_key = vae_key_to_diffusers(key, num_res_blocks, levels)
        if new_key is None:
            unknown.append(key)
        else:
            renamed[new_key] = value
    return renamed, config, sorted(unknown)


# --- text encoder (UMT5-XXL encoder) ---------------------------------------------------------------------------

_T5_PREFIXES = (
    ("token_embedding.", "shared."),
    ("norm.", "encoder.final_layer_norm."),
    ("blocks.{n}.norm1.", "encoder.block.{n}.layer.0.layer_norm."),
    ("blocks.{n}.attn.q.", "encoder.block.{n}.layer.0.SelfAttention.q."),
    ("blocks.{n}.attn.k.", "encoder.block.{n}.layer.0.SelfAttention.k."),
    ("blocks.{n}.attn.v.", "encoder.block.{n}.layer.0.SelfAttention.v."),
    ("blocks.{n}.attn.o.", "encoder.block.{n}.layer.0.SelfAttention.o."),
    ("blocks.{n}.pos_embedding.embedding.", "encoder.block.{n}.layer.0.SelfAttention.relative_attention_bias."),
    ("blocks.{n}.norm2.", "encoder.block.{n}.layer.1.layer_norm."),
    # T5's gated GELU: gelu(wi_0 x) · wi_1 x — the original's gate is wi_0, its fc1 is wi_1.
    ("blocks.{n}.ffn.gate.0.", "encoder.block.{n}.layer.1.DenseReluDense.wi_0."),
    ("blocks.{n}.ffn.fc1.", "encoder.block.{n}.layer.1.DenseReluDense.wi_1."),
    ("blocks.{n}.ffn.fc2.", "encoder.block.{n}.layer.1.DenseReluDense.wo."),
)


def t5_key_to_transformers(key: str) -> str | None:
    """The `transformers.UMT5EncoderModel` name of an original Wan T5 encoder tensor (None if unknown)."""
    return _rename(key, _T5_PREFIXES)


def t5_key_to_original(key: str) -> str | None:
    """The original Wan T5 name of a `UMT5EncoderModel` tensor (None if unknown; ``encoder.embed_tokens`` is tied
    to ``shared`` and has no name of its own in the original)."""
    return _rename(key, _T5_PREFIXES, reverse=True)


def t5_state_to_transformers(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict, list[str]]:
    """Rename an original Wan T5 state dict; returns (renamed tensors, UMT5 config dict, keys with no mapping).

    The config is read off the tensors (vocabulary, widths, heads, buckets, layers); activation and norms are the
    UMT5-XXL encoder's (gated tanh-GELU, RMS norm eps 1e-6, relative positions up to 128 in every layer).
    """
    for needed in ("token_embedding.weight", "blocks.0.attn.q.weight", "blocks.0.ffn.fc1.weight",
                   "blocks.0.pos_embedding.embedding.weight"):
        if needed not in state:
            raise ValueError(f"text encoder: no tensor {needed!r}; expected the Wan UMT5 encoder "
                             "(models_t5_umt5-xxl-enc-bf16.pth, one relative position table per layer)")
    vocab, dim = state["token_embedding.weight"].shape
    dim_attn = state["blocks.0.attn.q.weight"].shape[0]
    buckets, heads = state["blocks.0.pos_embedding.embedding.weight"].shape
    layers = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
    config = {
        "vocab_size": int(vocab), "d_model": int(dim), "d_kv": int(dim_attn // heads),
        "d_ff": int(state["blocks.0.ffn.fc1.weight"].shape[0]), "num_layers": layers, "num_heads": int(heads),
        "relative_attention_num_buckets": int(buckets), "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "layer_norm_epsilon": 1e-6,
        "dropout_rate": 0.0, "is_encoder_decoder": False, "use_cache": False, "tie_word_embeddings": False,
        "pad_token_id": 0, "eos_token_id": 1,
    }
    renamed, unknown = {}, []
    for key, value in state.items():
        new_key = t5_key_to_transformers(key)
        if new_key is None:
            unknown.append(key)
        else:
            renamed[new_key] = value
    if "shared.weight" in renamed:
        renamed["encoder.embed_tokens.weight"] = renamed["shared.weight"]
    return renamed, config, sorted(unknown)
