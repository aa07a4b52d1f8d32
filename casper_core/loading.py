"""Loading Casper from the real release files: the CogVideoX-Fun-V1.5-5b-InP diffusers folder + Casper weights.

Release formats accepted:

- base model: a diffusers folder with ``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
  ``scheduler/`` (as *CogVideoX-Fun-V1.5-5b-InP* ships);
- Casper transformer: one ``.safetensors`` state dict whose tensors replace the base transformer's (the public
  release's format), or a diffusers transformer folder (``config.json`` + safetensors weights, or a whole pipeline
  folder with ``transformer/``), which then replaces the base transformer entirely.

Only safetensors are read; pickle-based files (``.bin``, ``.pt``, ``.pth``, ``.ckpt``) are refused, never unpickled.
Every weight file's header is read before any weights, so a truncated or corrupt file is refused by name up front.

A Casper ``.safetensors`` must replace at least `MIN_CASPER_SHARE` of the transformer's tensors: a file that matches
(almost) nothing, such as a LoRA, a VAE or a checkpoint with other key names, would otherwise leave the base model
running unnoticed. ``allow_partial=True`` loads such a partial file on purpose (the base fills in the rest).

Weights are read straight into modules built on the ``meta`` device, so a 5 B-parameter model is never randomly
initialised nor held twice in memory; a Casper state dict's tensors are read instead of the base's (the base file is
only read for keys the Casper file lacks).

dtype policy: bf16 (default) and fp32 are used as given. fp16 is **not** used: CogVideoX 1.5 (and the T5 v1.1
encoder) overflow in fp16 and produce NaN / black frames, so ``dtype="fp16"`` warns and loads bf16 instead
(`LoadReport.dtype` says what was used).
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from .attention import check_attention_backend, set_attention_backend
from .memory import MemoryPlan, apply_memory_mode, check_memory_mode
from .speed import SpeedPlan, apply_speed_options, check_speed_options

logger = logging.getLogger(__name__)

BASE_SUBFOLDERS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
}
_DIFFUSERS_WEIGHTS = "diffusion_pytorch_model"
_TRANSFORMERS_WEIGHTS = "model"
# Prefixes that training wrappers put in front of every key; stripped when *all* keys carry one.
_WRAPPER_PREFIXES = ("module.", "transformer.", "model.")
# CogVideoX-Fun's transformer config key (input-noise augmentation of the inpaint latents; read by the pipeline).
_RELEASE_ONLY_CONFIG_KEYS = ("add_noise_in_inpaint_model",)
# A Casper state dict must replace at least this share of the transformer's tensors unless allow_partial=True.
MIN_CASPER_SHARE = 0.9


@dataclass
class LoadReport:
    """What `load_casper_pipeline` loaded.

    Attributes:
        base_dir: the base model folder.
        casper_weights: the Casper file or folder (None: the base transformer is used as is).
        casper_format: ``"safetensors"`` (state dict over the base), ``"diffusers_folder"`` or None.
        overridden_keys: number of transformer tensors taken from the Casper file.
        transformer_keys: number of tensors of the transformer.
        missing_keys: transformer keys the Casper state dict lacks (their base values are kept).
        unexpected_keys: keys in the Casper state dict that the transformer does not have (ignored).
        stripped_prefix: a wrapper prefix removed from every Casper key ("" if none).
        dtype: the dtype actually used.
        memory_mode, attention_backend, device: as set up.
        compile, fp8_compute: the speed options as set up (`casper_core.speed`).
        fp8_linears: number of layers computing in fp8 (``fp8_compute``).
        add_noise_in_inpaint_model: the transformer config flag (the pipeline's input-noise augmentation).
    """

    base_dir: Path
    casper_weights: Path | None
    casper_format: str | None
    overridden_keys: int = 0
    transformer_keys: int = 0
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    stripped_prefix: str = ""
    dtype: torch.dtype = torch.bfloat16
    memory_mode: str = "gpu"
    attention_backend: str = "auto"
    device: torch.device = torch.device("cpu")
    add_noise_in_inpaint_model: bool = False
    compile: bool = False
    fp8_compute: bool = False
    fp8_linears: int = 0


@dataclass
class LoadedComponents:
    """The five components plus how they were loaded and placed."""

    transformer: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    report: LoadReport
    memory: MemoryPlan
    speed: SpeedPlan = field(default_factory=SpeedPlan)


def load_casper_pipeline(
    base_dir,
    casper_weights=None,
    *,
    dtype="bf16",
    memory_mode: str = "gpu",
    device=None,
    attention_backend: str | None = "auto",
    vae_tiling: bool = True,
    allow_partial: bool = False,
    compile: bool = False,  # noqa: A002  (the option's name, as on the node)
    fp8_compute: bool = False,
):
    """Load the Casper pipeline from the release files.

    Args:
        base_dir: diffusers folder of CogVideoX-Fun-V1.5-5b-InP (``transformer/``, ``vae/``, ``text_encoder/``,
            ``tokenizer/``, ``scheduler/``).
        casper_weights: Casper transformer ``.safetensors`` state dict, or a diffusers transformer folder;
            None uses the base transformer.
        dtype: ``"bf16"`` (default), ``"fp32"``, or ``"fp16"`` (warns and uses bf16: CogVideoX 1.5 gives NaN in
            fp16); a torch dtype is accepted too.
        memory_mode: one of `casper_core.memory.MEMORY_MODES`.
        device: execution device; default CUDA when available, else CPU.
        attention_backend: one of `casper_core.attention.ATTENTION_BACKENDS` (None = "auto").
        vae_tiling: decode/encode the VAE in spatial tiles and one batch item at a time (lower peak memory).
        allow_partial: load a Casper ``.safetensors`` that replaces fewer than `MIN_CASPER_SHARE` of the
            transformer's tensors (the base model's values are kept for the rest). False refuses such a file,
            naming it and showing keys of the file and of the model.
        compile: per-block `torch.compile` of the transformer (CUDA + Triton; the first call of each new input
            shape compiles, several seconds; see `casper_core.speed`). Not with ``sequential_offload`` or the fp8
            storage modes.
        fp8_compute: the transformer blocks' matrix products in fp8 (compute capability ≥ 8.9; best with
            `compile`); see `casper_core.speed`.

    Returns:
        `CasperPipeline` with ``.load_report`` (`LoadReport`) and ``.memory_plan`` (`MemoryPlan`).
    """
    from .pipeline import CasperPipeline

    parts = load_casper_components(
        base_dir,
        casper_weights,
        dtype=dtype,
        memory_mode=memory_mode,
        device=device,
        attention_backend=attention_backend,
        vae_tiling=vae_tiling,
        allow_partial=allow_partial,
        compile=compile,
        fp8_compute=fp8_compute,
    )
    pipeline = CasperPipeline(
        transformer=parts.transformer,
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        scheduler=parts.scheduler,
    )
    pipeline.load_report = parts.report
    pipeline.memory_plan = parts.memory
    _tell_pipeline_its_device(pipeline, parts.memory)
    return pipeline


def load_casper_components(
    base_dir,
    casper_weights=None,
    *,
    dtype="bf16",
    memory_mode: str = "gpu",
    device=None,
    attention_backend: str | None = "auto",
    vae_tiling: bool = True,
    allow_partial: bool = False,
    compile: bool = False,  # noqa: A002
    fp8_compute: bool = False,
) -> LoadedComponents:
    """Load, place and configure the five components (see `load_casper_pipeline` for the arguments)."""
    # 1. Check every argument and file before reading any weights.
    torch_dtype = resolve_dtype(dtype)
    check_memory_mode(memory_mode)
    device = resolve_device(device)
    check_attention_backend(attention_backend, device)
    check_speed_options(compile=compile, fp8_compute=fp8_compute, memory_mode=memory_mode, device=device)
    folders = check_base_dir(base_dir)
    casper_path, casper_format = check_casper_weights(casper_weights)
    weight_files = {
        "vae": find_safetensors(folders["vae"], _DIFFUSERS_WEIGHTS),
        "text_encoder": find_safetensors(folders["text_encoder"], _TRANSFORMERS_WEIGHTS),
    }
    if casper_format == "diffusers_folder":
        transformer_folder = casper_path / "transformer" if (casper_path / "transformer").is_dir() else casper_path
    else:
        transformer_folder = folders["transformer"]
    _require_file(transformer_folder / "config.json", "transformer config")
    check_inpaint_transformer_config(transformer_folder / "config.json")
    weight_files["transformer"] = find_safetensors(transformer_folder, _DIFFUSERS_WEIGHTS)
    for files in weight_files.values():  # headers only: a truncated or corrupt file is named before any loading
        for file in files:
            check_safetensors_file(file)

    report = LoadReport(
        base_dir=Path(base_dir),
        casper_weights=casper_path,
        casper_format=casper_format,
        dtype=torch_dtype,
        memory_mode=memory_mode,
        device=device,
    )

    # 2. Transformer (with the Casper weights read in place of the base's).
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    overrides = None
    if casper_format == "safetensors":
        overrides = read_safetensors([casper_path])
        overrides, report.stripped_prefix = strip_wrapper_prefix(overrides)
    transformer, override_info = load_diffusers_model(
        CogVideoXTransformer3DModel, transformer_folder, weight_files["transformer"], torch_dtype, overrides=overrides,
        min_override_share=0.0 if allow_partial else MIN_CASPER_SHARE, override_source=f"casper_weights {casper_path}",
    )
    report.transformer_keys = len(transformer.state_dict())
    if overrides is not None:
        report.overridden_keys, report.missing_keys, report.unexpected_keys = override_info
        if report.missing_keys or report.unexpected_keys:
            logger.warning(
                "Casper weights %s: %d transformer tensors missing (base values kept): %s; %d unexpected (ignored): %s",
                casper_path,
                len(report.missing_keys),
                _preview(report.missing_keys),
                len(report.unexpected_keys),
                _preview(report.unexpected_keys),
            )
    report.add_noise_in_inpaint_model = bool(transformer.config.get("add_noise_in_inpaint_model", False))

    # 3. VAE, text encoder, tokenizer, scheduler.
    vae, _ = load_diffusers_model(AutoencoderKLCogVideoX, folders["vae"], weight_files["vae"], torch_dtype)
    if vae_tiling:
        vae.enable_tiling()
        vae.enable_slicing()
    text_encoder = load_text_encoder(folders["text_encoder"], torch_dtype)
    tokenizer = load_tokenizer(folders["tokenizer"])
    scheduler = load_scheduler(folders["scheduler"])

    # 4. Attention kernel and speed options (fp8 layers before placement, so the memory mode moves their fp8
    #    weights), then placement (offload hooks wrap whatever processors are installed).
    report.attention_backend = set_attention_backend(
        transformer, attention_backend, device, fuse_qkv=compile or fp8_compute
    )
    speed = apply_speed_options(transformer, compile=compile, fp8_compute=fp8_compute, quantize_device=device)
    report.compile, report.fp8_compute, report.fp8_linears = compile, fp8_compute, len(speed.fp8_linears)
    memory = apply_memory_mode(
        {"text_encoder": text_encoder, "vae": vae, "transformer": transformer}, memory_mode, device, torch_dtype
    )
    return LoadedComponents(transformer, vae, text_encoder, tokenizer, scheduler, report, memory, speed)


# ----------------------------------------------------------------------------------------------------------------
# Argument and file checks


def resolve_dtype(dtype) -> torch.dtype:
    """Map ``"bf16" | "fp32" | "fp16"`` (or a torch dtype) to the dtype used; fp16 warns and gives bf16."""
    if isinstance(dtype, torch.dtype):
        torch_dtype = dtype
    elif isinstance(dtype, str) and dtype.lower() in DTYPES:
        torch_dtype = DTYPES[dtype.lower()]
    else:
        raise ValueError(f"dtype must be one of 'bf16', 'fp16', 'fp32' (or a torch dtype), got {dtype!r}")
    if torch_dtype == torch.float16:
        warnings.warn(
            "dtype fp16: CogVideoX 1.5 and its T5 encoder overflow in float16 (NaN / black frames); "
            "loading in bf16 instead. Use 'fp32' on GPUs without bf16 support.",
            UserWarning,
            stacklevel=3,
        )
        return torch.bfloat16
    if torch_dtype not in (torch.bfloat16, torch.float32):
        raise ValueError(f"dtype must be bf16, fp16 or fp32, got {torch_dtype}")
    return torch_dtype


def resolve_device(device) -> torch.device:
    """`device` as a torch.device; None → CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be a torch device or name like 'cuda' or 'cpu', got {device!r}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available")
    return device


def check_base_dir(base_dir) -> dict[str, Path]:
    """Check the base model folder layout; return its component folders. Raises FileNotFoundError naming what lacks."""
    if base_dir is None:
        raise ValueError("base_dir must be the CogVideoX-Fun-V1.5-5b-InP diffusers folder, got None")
    base = Path(base_dir)
    if not base.is_dir():
        raise FileNotFoundError(
            f"base_dir {base} is not a folder; expected the CogVideoX-Fun-V1.5-5b-InP diffusers folder with "
            f"{', '.join(s + '/' for s in BASE_SUBFOLDERS)}"
        )
    folders = {name: base / name for name in BASE_SUBFOLDERS}
    missing = [name for name, folder in folders.items() if not folder.is_dir()]
    if missing:
        raise FileNotFoundError(
            f"base_dir {base} lacks the subfolder(s) {', '.join(m + '/' for m in missing)}; a CogVideoX-Fun "
            f"diffusers folder has {', '.join(s + '/' for s in BASE_SUBFOLDERS)}"
        )
    _require_file(folders["vae"] / "config.json", "VAE config")
    _require_file(folders["text_encoder"] / "config.json", "text encoder config")
    _require_file(folders["scheduler"] / "scheduler_config.json", "scheduler config")
    tokenizer_files = ("spiece.model", "tokenizer.json")
    if not any((folders["tokenizer"] / name).is_file() for name in tokenizer_files):
        raise FileNotFoundError(
            f"tokenizer folder {folders['tokenizer']} has neither spiece.model nor tokenizer.json (the T5 tokenizer)"
        )
    return folders


def check_casper_weights(casper_weights) -> tuple[Path | None, str | None]:
    """Classify the Casper weights path: (path, "safetensors" | "diffusers_folder") or (None, None)."""
    if casper_weights is None:
        return None, None
    path = Path(casper_weights)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(
            f"casper_weights {path}: {path.suffix} files are pickled and can run code when loaded; only "
            ".safetensors is accepted. Convert it once in a trusted environment (safetensors.torch.save_file)."
        )
    if path.is_dir():
        folder = path / "transformer" if (path / "transformer" / "config.json").is_file() else path
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"casper_weights folder {path} has no config.json (nor transformer/config.json); expected a "
                "diffusers transformer folder or a .safetensors file"
            )
        return path, "diffusers_folder"
    if not path.is_file():
        raise FileNotFoundError(f"casper_weights {path} does not exist (expected a .safetensors file or folder)")
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"casper_weights {path}: expected a .safetensors file, got suffix {path.suffix!r}")
    check_safetensors_file(path, what="casper_weights")
    return path, "safetensors"


def check_safetensors_file(path, what: str = "weight file") -> list[str]:
    """Read only the header of the safetensors file `path`; return its tensor names.

    Raises ValueError naming the file when it is not a readable safetensors file (truncated, corrupt, empty).
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return list(handle.keys())
    except Exception as error:  # noqa: BLE001  (SafetensorError for a bad header or short file, OSError)
        raise _unreadable(path, what, error) from error


def _unreadable(path, what: str, error: Exception) -> ValueError:
    return ValueError(
        f"{what} {path} is not a readable .safetensors file ({error}); it is probably truncated or corrupt "
        "(an interrupted download or copy?): download it again"
    )


def check_inpaint_transformer_config(config_path: Path) -> None:
    """Refuse a transformer that does not take Casper's 33-channel input (16 noisy + 1 mask + 16 video latents)."""
    config = json.loads(Path(config_path).read_text())
    if config.get("in_channels") != 33:
        raise ValueError(
            f"{config_path}: in_channels is {config.get('in_channels')}, Casper needs the 33-channel inpaint "
            "transformer (CogVideoX-Fun-V1.5-5b-InP); is this a text-to-video or image-to-video model?"
        )


def find_safetensors(folder: Path, stem: str) -> list[Path]:
    """The safetensors weight file(s) of a diffusers/transformers folder: ``<stem>.safetensors`` or its shards.

    Raises ValueError when only pickled weights exist, FileNotFoundError when none exist.
    """
    folder = Path(folder)
    single = folder / f"{stem}.safetensors"
    if single.is_file():
        return [single]
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        shard_names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        shards = [folder / name for name in shard_names]
        absent = [str(s) for s in shards if not s.is_file()]
        if absent:
            raise FileNotFoundError(f"{index} lists shard(s) that are missing: {', '.join(absent)}")
        return shards
    pickled = sorted(p.name for p in folder.glob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickled:
        raise ValueError(
            f"{folder} holds only pickled weights ({', '.join(pickled)}); only safetensors are loaded. "
            f"Expected {single.name} or {index.name}."
        )
    raise FileNotFoundError(f"{folder} has no weights: expected {single.name} or {index.name}")


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"missing {what}: {path}")


# ----------------------------------------------------------------------------------------------------------------
# Reading weights


def read_safetensors(files: list[Path], skip: set[str] | frozenset = frozenset()) -> dict[str, torch.Tensor]:
    """All tensors of `files` except the keys in `skip` (CPU, stored dtype)."""
    tensors = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt", device="cpu") as handle:
                for key in handle.keys():
                    if key not in skip:
                        tensors[key] = handle.get_tensor(key)
        except Exception as error:  # noqa: BLE001  (SafetensorError, OSError): name the file
            raise _unreadable(file, "weight file", error) from error
    return tensors


def strip_wrapper_prefix(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Remove a training-wrapper prefix (``module.``, ``transformer.``, ``model.``) carried by every key."""
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            return {key[len(prefix):]: value for key, value in state_dict.items()}, prefix
    return state_dict, ""


def load_diffusers_model(
    model_class,
    folder: Path,
    weight_files: list[Path],
    dtype: torch.dtype,
    overrides=None,
    *,
    min_override_share: float = 0.0,
    override_source: str = "overrides",
):
    """Build `model_class` from ``folder/config.json`` on the meta device and read its safetensors weights into it.

    Args:
        overrides: optional state dict whose tensors replace the file's (a Casper checkpoint).
        min_override_share: refuse `overrides` that replace fewer than this share of the model's tensors (checked
            before the base weights are read).
        override_source: how `overrides` is named in errors (e.g. ``"casper_weights <file>"``).

    Returns:
        (model in eval mode on the CPU in `dtype`, (overridden count, missing keys, unexpected keys) of `overrides`).

    Raises:
        ValueError: a tensor's shape differs from the model's (names the tensor and both shapes), the weight files
            leave model tensors unset, or `overrides` replaces too few tensors.
    """
    config = json.loads((Path(folder) / "config.json").read_text())
    # Release-only flags the diffusers class does not take: kept in the model's config (the pipeline reads them)
    # without diffusers' misleading "will be ignored" warning.
    release_flags = {key: config.pop(key) for key in _RELEASE_ONLY_CONFIG_KEYS if key in config}
    with torch.device("meta"):
        model = model_class.from_config(config)
    if release_flags:
        model.register_to_config(**release_flags)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}

    override_info = (0, [], [])
    state = {}
    if overrides is not None:
        unexpected = sorted(key for key in overrides if key not in expected)
        used = {key: value for key, value in overrides.items() if key in expected}
        _check_shapes(used, expected, source=override_source)
        missing = sorted(key for key in expected if key not in used)
        override_info = (len(used), missing, unexpected)
        if len(used) < min_override_share * len(expected):
            raise ValueError(
                f"{override_source}: replaces only {len(used)} of the transformer's {len(expected)} tensors "
                f"({len(used) / max(len(expected), 1):.0%}; at least {min_override_share:.0%} expected), so mostly "
                f"the base model would run. Keys in the file that the model lacks: "
                f"{_preview(unexpected, 4) or '(none)'}; model keys the file lacks: {_preview(missing, 4)}. "
                "Is this the Casper transformer (not a LoRA, VAE or other model)? To load a partial file on purpose, "
                "pass allow_partial=True (Load Casper Model: allow_partial_weights)."
            )
        state.update(used)
    base = read_safetensors(weight_files, skip=set(state))
    base_unexpected = sorted(key for key in base if key not in expected)
    if base_unexpected:
        logger.warning("%s: ignoring %d tensors the model does not have: %s", folder, len(base_unexpected),
                       _preview(base_unexpected))
    base = {key: value for key, value in base.items() if key in expected}
    _check_shapes(base, expected, source=str(folder))
    state.update(base)

    absent = sorted(key for key in expected if key not in state)
    if absent:
        raise ValueError(
            f"{folder}: the weight files lack {len(absent)} of the model's tensors, e.g. {_preview(absent)}; "
            "the folder's config.json and weights do not belong together"
        )
    state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.eval().requires_grad_(False)
    return model, override_info


def _check_shapes(state: dict[str, torch.Tensor], expected: dict[str, tuple], source: str) -> None:
    for key, value in state.items():
        if tuple(value.shape) != expected[key]:
            raise ValueError(
                f"{source}: tensor {key!r} has shape {tuple(value.shape)} but the model expects {expected[key]}; "
                "these weights are for a different architecture or config"
            )


def load_text_encoder(folder: Path, dtype: torch.dtype):
    """The T5 encoder from a transformers folder (safetensors only, no network)."""
    from transformers import T5EncoderModel

    find_safetensors(folder, _TRANSFORMERS_WEIGHTS)  # refuses pickled-only folders before transformers looks
    model = T5EncoderModel.from_pretrained(str(folder), dtype=dtype, use_safetensors=True, local_files_only=True)
    return model.eval().requires_grad_(False)


def load_tokenizer(folder: Path):
    """The T5 tokenizer (``spiece.model`` as released, or ``tokenizer.json``), offline."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (ImportError, ValueError) as error:
        if not (Path(folder) / "tokenizer.json").is_file():
            raise ImportError(
                f"could not read the sentencepiece tokenizer in {folder} ({error}); reading spiece.model needs the "
                "'sentencepiece' and 'protobuf' packages: pip install sentencepiece protobuf"
            ) from error
        raise


def load_scheduler(folder: Path):
    """DDIM with the release's scheduler config.

    The release names `CogVideoXDDIMScheduler`; the public Casper pipeline loads the same file into diffusers'
    plain `DDIMScheduler` ("DDIM_Origin"), which we follow (`snr_shift_scale` is not used by it).
    """
    from diffusers import DDIMScheduler

    config = json.loads((Path(folder) / "scheduler_config.json").read_text())
    config = {key: value for key, value in config.items() if key != "snr_shift_scale"}
    return DDIMScheduler.from_config(config)


def _tell_pipeline_its_device(pipeline, memory: MemoryPlan) -> None:
    # With offloading the weights sit on the CPU, so the pipeline cannot infer where to compute from them.
    setter = getattr(pipeline, "set_execution_device", None)
    if callable(setter):
        setter(memory.execution_device)
    else:
        pipeline.execution_device = memory.execution_device


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")
