"""Loading Casper on Wan2.1-Fun-InP from the real release files.

The base model is the Wan2.1-Fun-InP folder as released (``alibaba-pai/Wan2.1-Fun-1.3B-InP`` or ``-14B-InP``)::

    config.json                                    original Wan transformer config (dim, num_heads, in_dim 36, i2v)
    diffusion_pytorch_model*.safetensors           transformer (original key names; shards with an index)
    Wan2.1_VAE.pth                                 VAE (original key names)
    models_t5_umt5-xxl-enc-bf16.pth                UMT5-XXL text encoder (original key names)
    google/umt5-xxl/                               its tokenizer
    models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth, xlm-roberta-large/   not read: Casper feeds the image
                                                   branch zeros (see `casper_core.wan_pipeline`)

The Casper weights are one ``.safetensors`` file: for 1.3B the whole fine-tuned transformer (replacing the base's
tensors, as for CogVideoX: at least `casper_core.loading.MIN_CASPER_SHARE` of them unless ``allow_partial``), for
14B a LoRA (``lora_unet_…lora_down/lora_up/alpha``, the reference's format) merged into the base weights with
``lora_scale`` (1.0 as released). Either key layout is accepted: the original Wan names or diffusers'.

**Safetensors only.** The release ships its VAE and text encoder as ``.pth`` (pickle) files, which the pack never
reads: ``python tools/convert_wan_release.py BASE_DIR`` converts them once to ``.safetensors`` beside them (outside
ComfyUI, with PyTorch's restricted ``weights_only`` unpickler). A folder with only the ``.pth`` files is refused with
that command in the message.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from . import wan_keys
from .attention import _HOPPER_PRIORITY, _KERNELS, check_attention_backend
from .loading import (
    MIN_CASPER_SHARE,
    LoadReport,
    _preview,
    check_safetensors_file,
    find_safetensors,
    load_tokenizer,
    read_safetensors,
    resolve_device,
    resolve_dtype,
    strip_wrapper_prefix,
)
from .memory import apply_memory_mode, check_memory_mode

logger = logging.getLogger(__name__)

TRANSFORMER_STEM = "diffusion_pytorch_model"
VAE_STEM = "Wan2.1_VAE"
TEXT_ENCODER_STEM = "models_t5_umt5-xxl-enc-bf16"
TOKENIZER_FOLDER = "google/umt5-xxl"
# The reference's Wan scheduler (config/wan2.1/wan_civitai.yaml, sampler "Flow"): flow-matching Euler, shift 5.
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "shift": 5.0,
    "use_dynamic_shifting": False,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}


@dataclass(frozen=True)
class WanBaseFiles:
    """The files of a Wan2.1-Fun-InP base folder that the pipeline reads."""

    config: Path
    transformer: list[Path]
    vae: Path
    text_encoder: Path
    tokenizer: Path


def is_wan_base_model(folder) -> bool:
    """True when `folder` looks like a Wan2.1-Fun-InP release folder (config with ``dim``/``num_heads``, the VAE,
    the text encoder and the tokenizer folder)."""
    try:
        check_wan_base_dir(folder)
    except (OSError, ValueError):
        return False
    return True


def check_wan_base_dir(base_dir) -> WanBaseFiles:
    """Check the release layout and return its files; FileNotFoundError / ValueError name what is missing or wrong."""
    if base_dir is None:
        raise ValueError("base_dir must be the Wan2.1-Fun-InP folder, got None")
    base = Path(base_dir)
    if not base.is_dir():
        raise FileNotFoundError(f"base_dir {base} is not a folder; expected the Wan2.1-Fun-InP release folder")
    config_path = base / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"base_dir {base} has no config.json (the Wan transformer config)")
    config = json.loads(config_path.read_text())
    if "num_heads" not in config and "num_attention_heads" not in config:
        raise ValueError(f"{config_path}: not a Wan transformer config (no num_heads); is this a Wan2.1-Fun folder?")
    in_channels = config.get("in_dim", config.get("in_channels"))
    if in_channels != 36:
        raise ValueError(f"{config_path}: in_dim is {in_channels}; Casper needs the 36-channel inpaint transformer "
                         "(Wan2.1-Fun-1.3B-InP or Wan2.1-Fun-14B-InP), not a text- or image-to-video model")
    tokenizer = base / TOKENIZER_FOLDER
    if not tokenizer.is_dir():
        raise FileNotFoundError(f"base_dir {base} lacks the tokenizer folder {TOKENIZER_FOLDER}/")
    return WanBaseFiles(
        config=config_path,
        transformer=find_safetensors(base, TRANSFORMER_STEM),
        vae=_release_weight_file(base, VAE_STEM, "VAE"),
        text_encoder=_release_weight_file(base, TEXT_ENCODER_STEM, "text encoder"),
        tokenizer=tokenizer,
    )


def _release_weight_file(base: Path, stem: str, what: str) -> Path:
    path = base / f"{stem}.safetensors"
    if path.is_file():
        return path
    if (base / f"{stem}.pth").is_file():
        raise FileNotFoundError(
            f"base_dir {base} holds the {what} as {stem}.pth only; weights are read from safetensors only: convert "
            f"it once with `python tools/convert_wan_release.py {base}` (writes {stem}.safetensors beside it)")
    raise FileNotFoundError(f"base_dir {base} lacks the {what} {stem}.safetensors (converted from the release's "
                            f"{stem}.pth by tools/convert_wan_release.py)")


def read_release_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a release weight file (safetensors, header checked first)."""
    path = Path(path)
    check_safetensors_file(path)
    return read_safetensors([path])


def load_wan_casper_pipeline(
    base_dir,
    casper_weights=None,
    *,
    dtype="bf16",
    memory_mode: str = "gpu",
    device=None,
    attention_backend: str | None = "auto",
    vae_tiling: bool = True,
    allow_partial: bool = False,
    lora_scale: float = 1.0,
):
    """Load the Wan2.1-Fun Casper pipeline (`casper_core.wan_pipeline.WanCasperPipeline`).

    Args:
        base_dir: the Wan2.1-Fun-InP release folder (see the module docstring).
        casper_weights: the Casper ``.safetensors``: a full transformer state dict (1.3B) or a LoRA (14B);
            None runs the base model.
        dtype: ``"bf16"`` (default) or ``"fp32"`` (``"fp16"`` warns and loads bf16).
        memory_mode: one of `casper_core.memory.MEMORY_MODES` (as for CogVideoX).
        device: execution device; default CUDA when available, else CPU.
        attention_backend: ``"auto"``, ``"sdpa_cudnn"``, ``"sdpa_flash"``, ``"sdpa_efficient"`` or ``"sdpa_math"``.
        vae_tiling: encode/decode the VAE in spatial tiles (lower peak memory).
        allow_partial: accept a full-weights file that replaces fewer than `MIN_CASPER_SHARE` of the tensors.
        lora_scale: multiplier of a LoRA's update (the reference's ``lora_weight``, 1.0).

    Returns:
        `WanCasperPipeline` with ``.load_report`` (`LoadReport`; ``casper_format`` is ``"safetensors"`` or
        ``"lora"``) and ``.memory_plan``.
    """
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from .wan_pipeline import WanCasperPipeline

    # 1. Check every argument and file before reading any weights
    torch_dtype = resolve_dtype(dtype)
    check_memory_mode(memory_mode)
    device = resolve_device(device)
    backend = check_attention_backend(attention_backend, device)
    if backend not in ("auto", *_KERNELS):
        raise ValueError(f"attention_backend {backend!r} is not available for Wan; use 'auto' or one of "
                         f"{sorted(_KERNELS)}")
    files = check_wan_base_dir(base_dir)
    casper_path = _check_casper_file(casper_weights)
    for file in files.transformer:
        check_safetensors_file(file)
    report = LoadReport(base_dir=Path(base_dir), casper_weights=casper_path, casper_format=None, dtype=torch_dtype,
                        memory_mode=memory_mode, device=device)

    # 2. Transformer: base weights with the Casper weights (full or LoRA) applied, in diffusers' names
    config = wan_keys.transformer_config_to_diffusers(json.loads(files.config.read_text()))
    with torch.device("meta"):
        transformer = WanTransformer3DModel.from_config(config)
    state = _transformer_state(files, casper_path, transformer, report, allow_partial, lora_scale)
    keep_fp32 = getattr(WanTransformer3DModel, "_keep_in_fp32_modules", None) or []
    _assign(transformer, state, torch_dtype, str(files.config.parent), keep_fp32=keep_fp32)

    # 3. VAE, text encoder, tokenizer, scheduler
    vae_state, vae_config, unknown = wan_keys.vae_state_to_diffusers(read_release_weights(files.vae))
    _warn_unknown(files.vae, unknown)
    with torch.device("meta"):
        vae = AutoencoderKLWan(**vae_config)
    _assign(vae, vae_state, torch_dtype, str(files.vae))
    if vae_tiling:
        vae.enable_tiling()
    t5_state, t5_config, unknown = wan_keys.t5_state_to_transformers(read_release_weights(files.text_encoder))
    _warn_unknown(files.text_encoder, unknown)
    with torch.device("meta"):
        text_encoder = UMT5EncoderModel(UMT5Config(**t5_config))
    _assign(text_encoder, t5_state, torch_dtype, str(files.text_encoder))
    tokenizer = load_tokenizer(files.tokenizer)
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)

    # 4. Placement (memory mode) and attention kernels
    memory = apply_memory_mode(
        {"text_encoder": text_encoder, "vae": vae, "transformer": transformer}, memory_mode, device, torch_dtype
    )
    pipeline = WanCasperPipeline(transformer, vae, text_encoder, tokenizer, scheduler)
    pipeline.load_report = report
    pipeline.memory_plan = memory
    pipeline.set_execution_device(memory.execution_device)
    pipeline.attention_kernels, report.attention_backend = _attention_kernels(backend, device)
    return pipeline


def _check_casper_file(casper_weights) -> Path | None:
    if casper_weights is None:
        return None
    path = Path(casper_weights)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"casper_weights {path}: expected a .safetensors file (full transformer or LoRA); "
                         "pickled files are never loaded")
    if not path.is_file():
        raise FileNotFoundError(f"casper_weights {path} does not exist (expected a .safetensors file)")
    check_safetensors_file(path, what="casper_weights")
    return path


def _transformer_state(files: WanBaseFiles, casper_path, transformer, report: LoadReport, allow_partial: bool,
                       lora_scale: float) -> dict[str, torch.Tensor]:
    expected = transformer.state_dict()
    report.transformer_keys = len(expected)
    casper = {}
    if casper_path is not None:
        casper, report.stripped_prefix = strip_wrapper_prefix(read_safetensors([casper_path]))
    lora = casper if wan_keys.is_lora_state(casper) else None
    overrides = {}
    if casper and lora is None:
        report.casper_format = "safetensors"
        overrides, unknown = wan_keys.transformer_state_to_diffusers(casper)
        used = {key: value for key, value in overrides.items() if key in expected}
        report.overridden_keys = len(used)
        report.missing_keys = sorted(key for key in expected if key not in used)
        report.unexpected_keys = sorted(unknown + [key for key in overrides if key not in expected])
        if len(used) < (0.0 if allow_partial else MIN_CASPER_SHARE) * len(expected):
            raise ValueError(
                f"casper_weights {casper_path}: replaces only {len(used)} of the transformer's {len(expected)} "
                f"tensors (at least {MIN_CASPER_SHARE:.0%} expected), so mostly the base model would run. Keys in "
                f"the file the model lacks: {_preview(report.unexpected_keys, 4) or '(none)'}; model keys the file "
                f"lacks: {_preview(report.missing_keys, 4)}. To load it on purpose pass allow_partial=True."
            )
        if report.missing_keys or report.unexpected_keys:
            logger.warning("Casper weights %s: %d tensors missing (base kept): %s; %d unexpected (ignored): %s",
                           casper_path, len(report.missing_keys), _preview(report.missing_keys),
                           len(report.unexpected_keys), _preview(report.unexpected_keys))
        overrides = used
    # Base tensors only where the Casper file has none (a full fine-tune is then read instead of the base).
    skip = {wan_keys.transformer_key_to_original(key) for key in overrides} | set(overrides)
    base, unknown = wan_keys.transformer_state_to_diffusers(read_safetensors(files.transformer, skip=skip))
    _warn_unknown(files.config.parent, unknown)
    state = {**base, **overrides}
    if lora is not None:
        report.casper_format = "lora"
        original_names = {wan_keys.transformer_key_to_original(key): key for key in state}
        updates = wan_keys.lora_updates(lora, [name for name in original_names if name], scale=lora_scale)
        for name, update in updates.items():
            key = original_names[name]
            if tuple(update.shape) != tuple(state[key].flatten(1).shape):
                raise ValueError(f"casper_weights {casper_path}: LoRA update of {name} is {tuple(update.shape)}, the "
                                 f"weight is {tuple(state[key].shape)}; the LoRA is for another model size")
            state[key] = (state[key].float() + update.view(state[key].shape)).to(state[key].dtype)
        report.overridden_keys = len(updates)
    return state


def _assign(model: torch.nn.Module, state: dict[str, torch.Tensor], dtype: torch.dtype, source: str,
            keep_fp32=()) -> None:
    """Load `state` into `model` (built on the meta device) in `dtype`, naming missing or mis-shaped tensors."""
    expected = model.state_dict()
    for key, value in state.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(f"{source}: tensor {key!r} has shape {tuple(value.shape)} but the model expects "
                             f"{tuple(expected[key].shape)}; these weights are for a different architecture")
    absent = sorted(key for key in expected if key not in state)
    if absent:
        raise ValueError(f"{source}: lacks {len(absent)} of the model's tensors, e.g. {_preview(absent)}")

    def target(key: str) -> torch.dtype:
        return torch.float32 if any(part in key.split(".") for part in keep_fp32) else dtype

    cast = {key: state[key].to(target(key)) if state[key].is_floating_point() else state[key] for key in expected}
    model.load_state_dict(cast, strict=True, assign=True)
    _materialise_buffers(model)
    model.eval().requires_grad_(False)


def _materialise_buffers(model: torch.nn.Module) -> None:
    # Non-persistent buffers (RoPE tables) are not in the state dict and stay on the meta device: rebuild the
    # modules that own them on the CPU.
    for name, module in model.named_modules():
        if any(buffer.is_meta for buffer in module.buffers(recurse=False)):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, _rebuild(module))


def _rebuild(module: torch.nn.Module) -> torch.nn.Module:
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    if isinstance(module, WanRotaryPosEmbed):
        return WanRotaryPosEmbed(module.attention_head_dim, module.patch_size, module.max_seq_len)
    raise ValueError(f"{type(module).__name__}: has buffers that are not in the state dict")


def _warn_unknown(source, unknown: list[str]) -> None:
    if unknown:
        logger.warning("%s: ignoring %d tensors with no counterpart: %s", source, len(unknown), _preview(unknown))


def _attention_kernels(backend: str, device: torch.device):
    if backend == "auto":
        if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9:
            return (_HOPPER_PRIORITY, True), "auto (cudnn > flash > efficient > math)"
        return None, "auto (pytorch default)"
    return (_KERNELS[backend], False), backend
