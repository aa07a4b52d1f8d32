"""Where the Casper components live while the pipeline runs: memory modes.

Modes (peak GPU memory falls, transfer time rises, from top to bottom):

- ``"gpu"``: every component on the execution device for the whole run.
- ``"fp8_storage"``: as ``"gpu"``, but the transformer's weights are stored as float8 (e4m3) and each layer is cast
  to the compute dtype (bf16) just for its forward (diffusers' layerwise casting; patch embedding and norms stay
  in the compute dtype). Halves the transformer's weight memory; numerically the weights are rounded to fp8.
- ``"model_cpu_offload"``: components stay on the CPU (in pinned memory when CUDA is used) and each is moved to the
  execution device only while it is used, in the pipeline's order of use: T5 → VAE encode → transformer →
  VAE decode. At most one component is resident at a time.
- ``"fp8_model_cpu_offload"``: both of the above (the public reference's default mode).
- ``"group_offload"``: diffusers group offloading at block level (one transformer block / T5 block at a time,
  prefetched on a side CUDA stream); the VAE is offloaded leaf by leaf.
- ``"sequential_offload"``: diffusers group offloading at leaf level for every component: lowest memory, slowest.

`apply_memory_mode` is the one entry point; it returns a `MemoryPlan` that records what was done.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

MEMORY_MODES = (
    "gpu",
    "fp8_storage",
    "model_cpu_offload",
    "fp8_model_cpu_offload",
    "group_offload",
    "sequential_offload",
)
# Component names in the order the pipeline uses them.
COMPONENT_ORDER = ("text_encoder", "vae", "transformer")
FP8_STORAGE_DTYPE = torch.float8_e4m3fn


@dataclass
class MemoryPlan:
    """What `apply_memory_mode` set up.

    Attributes:
        mode: the memory mode.
        execution_device: where the computation runs (inputs must be put there).
        fp8_modules: names of the transformer submodules whose weights are stored in float8.
        offloader: the `ModelOffloader` in the ``*model_cpu_offload`` modes, else None.
        group_offloaded: components under diffusers group offloading.
    """

    mode: str
    execution_device: torch.device
    fp8_modules: list[str] = field(default_factory=list)
    offloader: "ModelOffloader | None" = None
    group_offloaded: list[str] = field(default_factory=list)

    def release(self) -> None:
        """Move every offloaded component back to the CPU (call at the end of a pipeline run)."""
        if self.offloader is not None:
            self.offloader.offload_all()


def check_memory_mode(memory_mode: str) -> str:
    """Return `memory_mode` if known, else raise ValueError listing the choices."""
    if memory_mode not in MEMORY_MODES:
        raise ValueError(f"memory_mode must be one of {MEMORY_MODES}, got {memory_mode!r}")
    return memory_mode


def apply_memory_mode(
    components: dict[str, torch.nn.Module],
    memory_mode: str,
    execution_device: torch.device | str,
    compute_dtype: torch.dtype,
) -> MemoryPlan:
    """Place `components` (``text_encoder``, ``vae``, ``transformer``; CPU, already in `compute_dtype`) for `memory_mode`.

    Modules are changed in place (moved, hooked, cast). Call once per set of modules.
    """
    check_memory_mode(memory_mode)
    missing = [name for name in COMPONENT_ORDER if name not in components]
    if missing:
        raise ValueError(f"components must hold {COMPONENT_ORDER}; missing {missing}")
    device = torch.device(execution_device)
    plan = MemoryPlan(mode=memory_mode, execution_device=device)

    if memory_mode.startswith("fp8"):
        plan.fp8_modules = enable_fp8_storage(components["transformer"], compute_dtype)

    if memory_mode in ("gpu", "fp8_storage"):
        for module in components.values():
            module.to(device)
    elif memory_mode in ("model_cpu_offload", "fp8_model_cpu_offload"):
        plan.offloader = ModelOffloader({name: components[name] for name in COMPONENT_ORDER}, device)
    else:
        _apply_group_offloading(components, device, leaf_only=memory_mode == "sequential_offload")
        plan.group_offloaded = list(COMPONENT_ORDER)
    return plan


def enable_fp8_storage(transformer: torch.nn.Module, compute_dtype: torch.dtype) -> list[str]:
    """Store the transformer's weights in float8_e4m3fn, cast to `compute_dtype` per layer at run time.

    Returns the names of the layers now stored in float8.
    """
    transformer.enable_layerwise_casting(storage_dtype=FP8_STORAGE_DTYPE, compute_dtype=compute_dtype)
    return sorted(
        name
        for name, module in transformer.named_modules()
        if any(p.dtype == FP8_STORAGE_DTYPE for p in module.parameters(recurse=False))
    )


def _apply_group_offloading(components: dict[str, torch.nn.Module], device: torch.device, *, leaf_only: bool) -> None:
    from diffusers.hooks import apply_group_offloading

    # A side stream overlaps the next group's upload with the current group's compute; CUDA only.
    use_stream = device.type == "cuda"
    for name in COMPONENT_ORDER:
        module = components[name]
        # The VAE's causal conv cache and chunked decoding make block groups awkward; leaves always work.
        leaf_level = leaf_only or name == "vae"
        apply_group_offloading(
            module,
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="leaf_level" if leaf_level else "block_level",
            num_blocks_per_group=None if leaf_level else 1,
            use_stream=use_stream,
            non_blocking=use_stream,
        )


class ModelOffloader:
    """Moves whole components to the execution device when they are used and the previous one back to the CPU.

    A forward pre-hook sits on each component and on each of its direct children (so `vae.encode`, which calls
    `vae.encoder`, and a chunked decode that calls `vae.decoder` directly are both caught). When a hooked module
    runs and its component is not resident, the resident component is offloaded and this one uploaded.

    Weights are kept in a CPU copy (pinned when the execution device is CUDA, so uploads run at full PCIe speed and
    asynchronously); offloading just points the parameters back at that copy instead of copying the data back —
    weights do not change during inference.

    Attributes:
        resident: name of the component on the execution device, or None.
        log: component names in the order they were uploaded (for inspection and tests).
    """

    def __init__(self, components: dict[str, torch.nn.Module], execution_device: torch.device):
        self.components = dict(components)
        self.execution_device = torch.device(execution_device)
        self.resident: str | None = None
        self.log: list[str] = []
        self._cpu_tensors: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._handles = []
        pin = self.execution_device.type == "cuda"
        for name, module in self.components.items():
            module.to("cpu")
            self._cpu_tensors[name] = [(t, _maybe_pinned(t.data, pin)) for t in _tensors_of(module)]
            for t, cpu in self._cpu_tensors[name]:
                t.data = cpu
            for hooked in (module, *module.children()):
                self._handles.append(hooked.register_forward_pre_hook(self._make_hook(name), with_kwargs=True))

    def _make_hook(self, name: str):
        def hook(_module, args, kwargs):
            self.onload(name)
            return _to_device(args, self.execution_device), _to_device(kwargs, self.execution_device)

        return hook

    def onload(self, name: str) -> None:
        """Make `name` the resident component (offloading the previous one)."""
        if self.resident == name:
            return
        if self.resident is not None:
            self._offload(self.resident)
        non_blocking = self.execution_device.type == "cuda"
        for t, cpu in self._cpu_tensors[name]:
            t.data = cpu.to(self.execution_device, non_blocking=non_blocking)
        self.resident = name
        self.log.append(name)

    def _offload(self, name: str) -> None:
        for t, cpu in self._cpu_tensors[name]:
            t.data = cpu
        self.resident = None

    def offload_all(self) -> None:
        """Put every component back on the CPU."""
        if self.resident is not None:
            self._offload(self.resident)

    def remove(self) -> None:
        """Remove the hooks (components stay where they are)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _tensors_of(module: torch.nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


def _maybe_pinned(tensor: torch.Tensor, pin: bool) -> torch.Tensor:
    if not pin:
        return tensor
    try:
        return tensor.pin_memory()
    except RuntimeError:  # pinned memory is a limited OS resource; pageable still works, just slower
        return tensor


def _to_device(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to_device(v, device) for v in value)
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value
