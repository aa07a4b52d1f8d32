"""Test support: tiny random checkpoints written in exactly the file layout of the real releases.

The real weights cannot be shipped with tests, so tests (and the benchmark's ``--tiny`` mode) write a miniature of
each release to disk and load it through the real loading code (`casper_core.loading`). The release's own configs and
file names are product constants, in `casper_core.release_format`; this module only shrinks them:

- the base model, a diffusers folder shaped like *CogVideoX-Fun-V1.5-5b-InP*::

      <base>/transformer/config.json            CogVideoX 1.5 keys + add_noise_in_inpaint_model, in_channels 33
      <base>/transformer/diffusion_pytorch_model.safetensors
      <base>/vae/config.json, diffusion_pytorch_model.safetensors
      <base>/text_encoder/config.json, model.safetensors  (T5EncoderModel)
      <base>/tokenizer/spiece.model, tokenizer_config.json, special_tokens_map.json (+ tokenizer.json, see below)
      <base>/scheduler/scheduler_config.json              the release's CogVideoXDDIMScheduler values

- the Casper transformer, one ``.safetensors`` state dict with the transformer's keys.

Only the widths and depths are tiny; every layout-relevant value (33 input channels, patch 2 × 2 × 2, rotary
embeddings, VAE scaling factor 0.7, scheduler settings, text length 226) is the release's.

The tokenizer is a sentencepiece unigram model trained here on a few sentences (no download). Besides the release's
``spiece.model`` it is also saved as ``tokenizer.json``: the release folder has no ``tokenizer.json``, and
transformers ≥ 5 needs ``protobuf`` to convert ``spiece.model``; pass ``tokenizer_json=False`` to write only the
release's files.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from .release_format import (
    BASE_MODEL_NAME,
    CASPER_WEIGHTS_NAME,
    RELEASE_SCHEDULER_CONFIG,
    RELEASE_T5_CONFIG,
    RELEASE_TRANSFORMER_CONFIG,
    RELEASE_VAE_CONFIG,
)

# Tiny widths and depths; everything that fixes the tensor layout stays as released.
TINY_TRANSFORMER_OVERRIDES = {
    "attention_head_dim": 16,  # RoPE splits it 1/4 time, 3/8 height, 3/8 width: each part must be even
    "num_attention_heads": 2,
    "num_layers": 2,
    "text_embed_dim": 32,
    "time_embed_dim": 16,
}
TINY_VAE_OVERRIDES = {"block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 4}
TINY_T5_OVERRIDES = {"d_ff": 64, "d_kv": 8, "d_model": 32, "num_decoder_layers": 2, "num_heads": 4, "num_layers": 2}

_TOKENIZER_SENTENCES = (
    "empty scene",
    "an empty scene with a clean background",
    "a boy walks on the beach and the waves roll in",
    "the video is not of a high quality it has a low resolution",
    "watermark present in each frame the background is solid",
    "strange body and strange trajectory distortion",
    "a dog runs across the park with a red ball",
    "a car drives down a wet street at night",
)


@dataclass(frozen=True)
class TinyRelease:
    """Paths of a tiny release written by `write_tiny_release`."""

    base_dir: Path          # diffusers folder shaped like CogVideoX-Fun-V1.5-5b-InP
    casper_weights: Path    # Casper transformer state dict (.safetensors)


def tiny_transformer_config(**overrides) -> dict:
    """The release transformer config with tiny widths (and any `overrides`)."""
    return {**RELEASE_TRANSFORMER_CONFIG, **TINY_TRANSFORMER_OVERRIDES, **overrides}


def tiny_vae_config(**overrides) -> dict:
    """The release VAE config with tiny widths (and any `overrides`)."""
    return {**RELEASE_VAE_CONFIG, **TINY_VAE_OVERRIDES, **overrides}


def tiny_t5_config(vocab_size: int, **overrides) -> dict:
    """The T5 v1.1 XXL encoder config with tiny widths and the given vocabulary size."""
    return {**RELEASE_T5_CONFIG, **TINY_T5_OVERRIDES, "vocab_size": vocab_size, **overrides}


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Fill every parameter with seeded small random values (in place) and return the module.

    Matrices get N(0, 1/fan_in), so activations keep their scale through deep stacks; vectors (biases, norm gains)
    get their default plus N(0, 0.02²), so no weight is a trivially zero or one constant that would hide a loading bug.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(module.named_parameters()):
            if param.ndim >= 2:
                fan_in = param[0].numel()
                values = torch.randn(param.shape, generator=generator) / math.sqrt(fan_in)
            else:
                values = param.detach().float().cpu() + 0.02 * torch.randn(param.shape, generator=generator)
            param.copy_(values.to(param.dtype))
    return module


def random_transformer_state_dict(config: dict, seed: int, dtype: torch.dtype = torch.float32) -> dict:
    """A complete random state dict for a `CogVideoXTransformer3DModel` of `config` (CPU tensors of `dtype`)."""
    from diffusers import CogVideoXTransformer3DModel

    model = randomize_(CogVideoXTransformer3DModel.from_config(_without_meta(config)), seed)
    return {key: value.detach().to(dtype).contiguous() for key, value in model.state_dict().items()}


def write_tiny_release(
    root: str | Path,
    *,
    seed: int = 0,
    casper_seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    tokenizer_json: bool = True,
    transformer_overrides: dict | None = None,
) -> TinyRelease:
    """Write a tiny base model folder and a tiny Casper checkpoint under `root` (which must not hold them yet).

    Args:
        root: folder to write into; created if missing.
        seed: seed of the base weights.
        casper_seed: seed of the Casper transformer weights (default `seed + 1`, so they differ from the base).
        dtype: dtype of the stored weights (the release stores bf16; float32 keeps tests exact).
        tokenizer_json: also save the tokenizer as ``tokenizer.json`` (see the module docstring).
        transformer_overrides: extra transformer config values.

    Returns:
        `TinyRelease` with ``base_dir = root/CogVideoX-Fun-V1.5-5b-InP`` and
        ``casper_weights = root/casper_cogvideox_fun_v1.5.safetensors``.
    """
    root = Path(root)
    base_dir = root / BASE_MODEL_NAME
    casper_path = root / CASPER_WEIGHTS_NAME
    for path in (base_dir, casper_path):
        if path.exists():
            raise FileExistsError(f"write_tiny_release: {path} already exists; pick an empty root")
    casper_seed = seed + 1 if casper_seed is None else casper_seed

    tokenizer = write_tokenizer(base_dir / "tokenizer", tokenizer_json=tokenizer_json)
    t5_config = tiny_t5_config(vocab_size=_round_up(len(tokenizer), 8))
    transformer_config = tiny_transformer_config(
        text_embed_dim=t5_config["d_model"], **(transformer_overrides or {})
    )
    write_transformer_folder(base_dir / "transformer", transformer_config, seed=seed, dtype=dtype)
    write_vae_folder(base_dir / "vae", tiny_vae_config(), seed=seed + 100, dtype=dtype)
    write_text_encoder_folder(base_dir / "text_encoder", t5_config, seed=seed + 200, dtype=dtype)
    write_scheduler_folder(base_dir / "scheduler")
    casper_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(random_transformer_state_dict(transformer_config, casper_seed, dtype), str(casper_path))
    return TinyRelease(base_dir=base_dir, casper_weights=casper_path)


def write_transformer_folder(folder: Path, config: dict, *, seed: int, dtype: torch.dtype = torch.float32) -> Path:
    """Write a diffusers transformer folder (``config.json`` + ``diffusion_pytorch_model.safetensors``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=False)
    _write_json(folder / "config.json", config)
    save_file(random_transformer_state_dict(config, seed, dtype), str(folder / "diffusion_pytorch_model.safetensors"))
    return folder


def write_vae_folder(folder: Path, config: dict, *, seed: int, dtype: torch.dtype = torch.float32) -> Path:
    """Write a diffusers VAE folder (``config.json`` + ``diffusion_pytorch_model.safetensors``)."""
    from diffusers import AutoencoderKLCogVideoX

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=False)
    _write_json(folder / "config.json", config)
    vae = randomize_(AutoencoderKLCogVideoX.from_config(_without_meta(config)), seed)
    state = {key: value.detach().to(dtype).contiguous() for key, value in vae.state_dict().items()}
    save_file(state, str(folder / "diffusion_pytorch_model.safetensors"))
    return folder


def write_text_encoder_folder(folder: Path, config: dict, *, seed: int, dtype: torch.dtype = torch.float32) -> Path:
    """Write a transformers ``T5EncoderModel`` folder (``config.json`` + ``model.safetensors``)."""
    from transformers import T5Config, T5EncoderModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=False)
    _write_json(folder / "config.json", config)
    model = randomize_(T5EncoderModel(T5Config(**{k: v for k, v in config.items() if k != "architectures"})), seed)
    # T5 ties encoder.embed_tokens to shared; the release stores both names, as transformers' save does.
    state = {key: value.detach().to(dtype).contiguous().clone() for key, value in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def write_scheduler_folder(folder: Path) -> Path:
    """Write ``scheduler_config.json`` with the release's CogVideoXDDIMScheduler values."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=False)
    _write_json(folder / "scheduler_config.json", RELEASE_SCHEDULER_CONFIG)
    return folder


def write_tokenizer(folder: Path, *, tokenizer_json: bool = True, vocab_size: int = 96):
    """Train a tiny sentencepiece unigram model and save it as a T5 tokenizer folder; return the tokenizer.

    Ids follow T5: pad 0, eos 1, unk 2; an eos is appended to every encoded text.
    """
    import sentencepiece as spm
    from transformers import T5Tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=False)
    model_bytes = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_TOKENIZER_SENTENCES * 8),
        model_writer=model_bytes,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    (folder / "spiece.model").write_bytes(model_bytes.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=model_bytes.getvalue())
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=226)
    if tokenizer_json:
        tokenizer.save_pretrained(str(folder))
    # The release's own files (written last so they are the release's content, whatever save_pretrained wrote).
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "T5Tokenizer",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "extra_ids": 0,
            "additional_special_tokens": [],
            "model_max_length": 226,
            "legacy": True,
            "sp_model_kwargs": {},
        },
    )
    _write_json(folder / "special_tokens_map.json", {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"})
    return tokenizer


def _without_meta(config: dict) -> dict:
    return {key: value for key, value in config.items() if not key.startswith("_")}


def _round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
