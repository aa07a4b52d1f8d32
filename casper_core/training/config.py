"""Settings of data synthesis and Casper fine-tuning in one place: dataclasses with the paper's values as defaults,
read from and written to JSON.

The paper (supplement Sec. B) fixes: random 80-frame clips (reflective padding for shorter ones), 128×128 crops,
a mix of 50 % real (Omnimatte + Tripod), 48 % synthetic (Kubric-like) and 2 % Object-Paste examples, keep → neutral
label switching on synthetic data, 20 000 iterations at batch size 32, full fine-tuning. What the paper does not state
(learning rate, switching probability, LoRA shape, optimiser) is set to common values and marked as ours below.

A config file is JSON with the sections ``data`` and ``train`` (`TrainingConfig`); keys left out keep their
defaults, unknown keys are refused by name.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# Tuple categories: where a training tuple came from (`casper_core.training.tuples`).
CATEGORIES = ("omnimatte", "tripod", "synthetic", "object_paste")
# Categories whose keep labels may be switched to neutral (the paper switches on synthetic data only).
SWITCHABLE_CATEGORIES = ("synthetic", "object_paste")
# Pixels × latent patch: crop sizes must be multiples of this (8× VAE, 2× patch).
CROP_MULTIPLE = 16
OPTIMIZERS = ("adamw", "adamw_fused", "adamw8bit")
MODES = ("full", "lora")
MIXED_PRECISION = ("bf16", "no")
DISTRIBUTED = ("ddp", "fsdp")


@dataclass
class DataConfig:
    """How training examples are drawn from a tuple folder (see `casper_core.training.dataset`)."""

    clip_frames: int = 80
    """Frames per training clip (paper: 80); shorter tuples are padded by reflection. The trainer pads further to the
    model's frame grid (4k+1 frames, k odd: 85), as inference does."""
    crop_size: tuple[int, int] = (128, 128)
    """(height, width) of the random crop (paper: 128×128); multiples of 16. Smaller tuples are resized to cover."""
    mix: dict = field(default_factory=lambda: {"real": 0.50, "synthetic": 0.48, "object_paste": 0.02})
    """Sampling shares per group (paper: 50 % real, 48 % synthetic, 2 % Object-Paste). A group is a category or
    ``"real"`` (omnimatte + tripod, drawn in proportion to their tuple counts). Groups without tuples are dropped and
    the rest renormalised."""
    keep_to_neutral: float = 0.5
    """Probability that a kept object's keep label becomes neutral in a synthetic example (ours; the paper switches
    "randomly" without a value)."""
    dilate: int = 0
    """Extra dilation (pixels, square) of the remove region at load time; tuples already carry their own dilation."""

    def __post_init__(self):
        self.crop_size = tuple(int(v) for v in self.crop_size)
        if not isinstance(self.clip_frames, int) or self.clip_frames < 1:
            raise ValueError(f"data.clip_frames: expected an integer ≥ 1, got {self.clip_frames!r}")
        if len(self.crop_size) != 2 or any(v <= 0 or v % CROP_MULTIPLE for v in self.crop_size):
            raise ValueError(f"data.crop_size: expected (height, width), positive multiples of {CROP_MULTIPLE}, "
                             f"got {self.crop_size!r}")
        groups = ("real",) + CATEGORIES
        bad = [key for key in self.mix if key not in groups]
        if bad or not self.mix:
            raise ValueError(f"data.mix: keys must be among {groups}, got {sorted(self.mix)}")
        if "real" in self.mix and any(key in self.mix for key in ("omnimatte", "tripod")):
            raise ValueError("data.mix: give either 'real' or 'omnimatte'/'tripod', not both")
        if any(not isinstance(v, (int, float)) or v < 0 for v in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError(f"data.mix: expected shares ≥ 0 with a positive sum, got {self.mix}")
        if not 0.0 <= self.keep_to_neutral <= 1.0:
            raise ValueError(f"data.keep_to_neutral: expected a probability in 0..1, got {self.keep_to_neutral!r}")
        if not isinstance(self.dilate, int) or self.dilate < 0:
            raise ValueError(f"data.dilate: expected pixels ≥ 0, got {self.dilate!r}")


@dataclass
class TrainConfig:
    """How the transformer is fine-tuned (see `casper_core.training.trainer`)."""

    mode: str = "full"
    """``"full"`` (as the paper) or ``"lora"``."""
    steps: int = 20_000
    """Optimiser steps (paper: 20 000 iterations)."""
    batch_size: int = 32
    """Global batch per optimiser step (paper: 32) = micro_batch_size × processes × accumulation steps."""
    micro_batch_size: int = 1
    """Examples per process per forward pass."""
    learning_rate: float = 2e-5
    """Ours (the paper does not state it); for LoRA 1e-4 is a usual start."""
    weight_decay: float = 1e-2
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float = 1.0
    warmup_steps: int = 100
    """Linear learning-rate warm-up, then constant."""
    optimizer: str = "adamw_fused"
    """``"adamw"``, ``"adamw_fused"`` (torch's fused kernel on CUDA, plain AdamW elsewhere) or ``"adamw8bit"``
    (bitsandbytes, installed separately)."""
    mixed_precision: str = "bf16"
    """``"bf16"``: float32 master weights, bf16 autocast (full); ``"no"``: float32 throughout (CPU tests)."""
    gradient_checkpointing: bool = True
    lora_rank: int = 64
    lora_alpha: int = 64
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "patch_embed.proj")
    """Module names LoRA adapts; the patch embedding is included because it reads the trimask channel."""
    lora_base_dtype: str = "bf16"
    """dtype of the frozen base weights in LoRA mode (``"bf16"`` or ``"fp32"``)."""
    prompt: str = "empty scene"
    """The text prompt every example is trained with (the release's)."""
    input_noise: bool = True
    """Noise on the conditioning video before encoding, with a log-normal strength exp(N(−3, 0.5²)) per example,
    as CogVideoX-Fun trains (only when the transformer config has ``add_noise_in_inpaint_model``)."""
    checkpoint_every: int = 1000
    """Steps between checkpoints (0: only the final one)."""
    seed: int = 0
    distributed: str = "ddp"
    """``"ddp"`` or ``"fsdp"`` (accelerate's FSDP plugin, sharding per transformer block); used when launched on
    several processes with ``accelerate launch``."""
    num_workers: int = 2
    """DataLoader worker processes per training process."""

    def __post_init__(self):
        self.adam_betas = tuple(float(v) for v in self.adam_betas)
        self.lora_targets = tuple(self.lora_targets)
        checks = (
            ("mode", self.mode in MODES, f"one of {MODES}"),
            ("steps", isinstance(self.steps, int) and self.steps >= 1, "an integer ≥ 1"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer ≥ 1"),
            ("micro_batch_size", isinstance(self.micro_batch_size, int) and self.micro_batch_size >= 1,
             "an integer ≥ 1"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("max_grad_norm", self.max_grad_norm > 0, "> 0"),
            ("warmup_steps", isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, "an integer ≥ 0"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}"),
            ("mixed_precision", self.mixed_precision in MIXED_PRECISION, f"one of {MIXED_PRECISION}"),
            ("lora_rank", isinstance(self.lora_rank, int) and self.lora_rank >= 1, "an integer ≥ 1"),
            ("lora_base_dtype", self.lora_base_dtype in ("bf16", "fp32"), "'bf16' or 'fp32'"),
            ("checkpoint_every", isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 0,
             "an integer ≥ 0"),
            ("distributed", self.distributed in DISTRIBUTED, f"one of {DISTRIBUTED}"),
            ("num_workers", isinstance(self.num_workers, int) and self.num_workers >= 0, "an integer ≥ 0"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"train.{name}: expected {expected}, got {getattr(self, name)!r}")

    def accumulation_steps(self, num_processes: int) -> int:
        """Gradient accumulation steps so that one optimiser step sees `batch_size` examples."""
        per_pass = self.micro_batch_size * num_processes
        if self.batch_size % per_pass:
            raise ValueError(
                f"train.batch_size {self.batch_size} is not a multiple of micro_batch_size × processes "
                f"({self.micro_batch_size} × {num_processes} = {per_pass})"
            )
        return self.batch_size // per_pass


@dataclass
class TrainingConfig:
    """A whole config file: ``{"data": {...}, "train": {...}}``."""

    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {"data": asdict(self.data), "train": asdict(self.train)}

    def save(self, path) -> Path:
        """Write the config as JSON to `path` (refuses to overwrite an existing file)."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"config: {path} already exists; pick a new file name")
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        if not isinstance(values, dict):
            raise ValueError(f"config: expected a JSON object with 'data' and 'train', got {type(values).__name__}")
        unknown = sorted(set(values) - {"data", "train"})
        if unknown:
            raise ValueError(f"config: unknown section(s) {unknown}; expected 'data' and 'train'")
        return cls(data=_build(DataConfig, values.get("data", {}), "data"),
                   train=_build(TrainConfig, values.get("train", {}), "train"))

    @classmethod
    def load(cls, path) -> "TrainingConfig":
        """Read a JSON config file; missing keys keep the paper's defaults."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config: {path} does not exist (expected a JSON file)")
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"config: {path} is not valid JSON ({error})") from error
        return cls.from_dict(values)


def _build(kind, values: dict, section: str):
    if not isinstance(values, dict):
        raise ValueError(f"config.{section}: expected an object, got {type(values).__name__}")
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"config.{section}: unknown key(s) {unknown}; known keys: {sorted(names)}")
    return kind(**values)
