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
- ``"group_offload"``: block-level group offloading (one transformer / T5 / VAE block at a time on the device, the
  next one uploaded on a side CUDA stream during compute; see `GroupOffloader`).
- ``"sequential_offload"``: the same at leaf level (one layer at a time): lowest memory, slowest.

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
        group_offloaders: the `GroupOffloader` of each component in the group/sequential modes.
    """

    mode: str
    execution_device: torch.device
    fp8_modules: list[str] = field(default_factory=list)
    offloader: "ModelOffloader | None" = None
    group_offloaders: dict[str, "GroupOffloader"] = field(default_factory=dict)

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
    """Place `components` for `memory_mode`.

    `components` holds ``text_encoder``, ``vae`` and ``transformer``, on the CPU and already in `compute_dtype`.

    Modules are changed in place (moved, hooked, cast). Call once per set of modules.
    """
    check_memory_mode(memory_mode)
    missing = [name for name in COMPONENT_ORDER if name not in components]
    if missing:
        raise ValueError(f"components must hold {COMPONENT_ORDER}; missing {missing}")
    device = torch.device(execution_device)
    if device.type == "cuda" and device.index is None:  # "cuda" → "cuda:N", so device comparisons are exact
        device = torch.device("cuda", torch.cuda.current_device())
    plan = MemoryPlan(mode=memory_mode, execution_device=device)

    if memory_mode.startswith("fp8"):
        plan.fp8_modules = enable_fp8_storage(components["transformer"], compute_dtype)

    if memory_mode in ("gpu", "fp8_storage"):
        for module in components.values():
            module.to(device)
    elif memory_mode in ("model_cpu_offload", "fp8_model_cpu_offload"):
        plan.offloader = ModelOffloader({name: components[name] for name in COMPONENT_ORDER}, device)
    else:
        plan.group_offloaders = _apply_group_offloading(
            components, device, leaf_only=memory_mode == "sequential_offload"
        )
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


def _apply_group_offloading(components: dict[str, torch.nn.Module], device: torch.device, *, leaf_only: bool):
    return {
        name: GroupOffloader(components[name], device, level="leaf" if leaf_only else "block")
        for name in COMPONENT_ORDER
    }


class GroupOffloader:
    """Keeps a module's weights on the CPU and uploads one group of layers at a time while it runs.

    Groups: at ``level="block"`` every element of the module's outermost `ModuleList`s (a transformer block, a T5
    block, a VAE down/up block); whatever lies outside such lists (embeddings, final norms, the VAE's mid block) is
    small and stays on the execution device. At ``level="leaf"`` every module that owns parameters is a group.

    A group is uploaded just before its forward and dropped right after (the parameters point back at their pinned
    CPU copy — nothing is copied back). On CUDA the next group is uploaded on a side stream while the current one
    computes, so transfers hide behind compute when a group computes longer than it takes to upload.
    (diffusers' group offloading does the same but needs `accelerate`; this needs nothing beyond torch.)

    Attributes:
        groups: the groups' module names, in order.
        uploads: number of group uploads so far (for inspection and tests).
    """

    def __init__(self, module: torch.nn.Module, execution_device: torch.device, *, level: str = "block"):
        if level not in ("block", "leaf"):
            raise ValueError(f"level must be 'block' or 'leaf', got {level!r}")
        self.device = torch.device(execution_device)
        self.uploads = 0
        cuda = self.device.type == "cuda"
        self._stream = torch.cuda.Stream(self.device) if cuda else None
        module.to("cpu")
        group_modules = _block_groups(module) if level == "block" else _leaf_groups(module)
        self.groups = [name for name, _ in group_modules]
        # A tied weight (T5's `shared` and `encoder.embed_tokens`) belongs to every group that owns it, with one CPU
        # copy: whichever of its modules runs uploads it.
        copies: dict[int, torch.Tensor] = {}
        self._tensors: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        for _, group in group_modules:
            recurse = level == "block"
            tensors = list({id(t): t for t in [*group.parameters(recurse), *group.buffers(recurse)]}.values())
            new = [t for t in tensors if id(t) not in copies]
            copies.update(zip((id(t) for t in new), _cpu_copies(new, cuda)))
            self._tensors.append([(t, copies[id(t)]) for t in tensors])
        for pairs in self._tensors:
            for t, cpu in pairs:
                t.data = cpu
        for t in _tensors_of(module):  # the ungrouped rest lives on the execution device
            if id(t) not in copies:
                t.data = t.data.to(self.device)
        self._state = ["cpu"] * len(group_modules)
        self._events: list = [None] * len(group_modules)
        self._handles = []
        for index, (_, group) in enumerate(group_modules):
            self._handles.append(group.register_forward_pre_hook(self._make_pre_hook(index)))
            self._handles.append(group.register_forward_hook(self._make_post_hook(index)))

    def _make_pre_hook(self, index: int):
        def hook(_module, _args):
            self._onload(index)
            if self._stream is not None and len(self._tensors) > 1:
                self._prefetch((index + 1) % len(self._tensors))

        return hook

    def _make_post_hook(self, index: int):
        def hook(_module, _args, _output):
            self._offload(index)

        return hook

    def _onload(self, index: int) -> None:
        if self._state[index] == "resident":
            return
        if self._state[index] == "prefetching":
            torch.cuda.current_stream(self.device).wait_event(self._events[index])
            for t, _ in self._tensors[index]:
                # allocated on the side stream, used on this one: keep the memory until this stream is done
                t.data.record_stream(torch.cuda.current_stream(self.device))
        else:
            non_blocking = self.device.type == "cuda"
            for t, cpu in self._tensors[index]:
                t.data = cpu.to(self.device, non_blocking=non_blocking)
            self.uploads += 1
        self._state[index] = "resident"

    def _prefetch(self, index: int) -> None:
        if self._state[index] != "cpu":
            return
        # The side stream must not overwrite memory the compute stream may still read from a freed group.
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):
            for t, cpu in self._tensors[index]:
                t.data = cpu.to(self.device, non_blocking=True)
            self._events[index] = torch.cuda.Event()
            self._events[index].record(self._stream)
        self._state[index] = "prefetching"
        self.uploads += 1

    def _offload(self, index: int) -> None:
        for t, cpu in self._tensors[index]:
            t.data = cpu
        self._state[index] = "cpu"

    def remove(self) -> None:
        """Remove the hooks (weights stay where they are)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _block_groups(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    groups: list[tuple[str, torch.nn.Module]] = []
    inside: list[str] = []
    for name, child in module.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside):
            continue
        if isinstance(child, torch.nn.ModuleList):
            inside.append(name)
            groups.extend((f"{name}.{i}", block) for i, block in enumerate(child))
    return groups


def _leaf_groups(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [
        (name, child)
        for name, child in module.named_modules()
        if any(True for _ in child.parameters(recurse=False)) or any(True for _ in child.buffers(recurse=False))
    ]


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
            tensors = _tensors_of(module)
            self._cpu_tensors[name] = list(zip(tensors, _cpu_copies(tensors, pin)))
            for t, cpu in self._cpu_tensors[name]:
                t.data = cpu
            for hooked in (module, *module.children()):
                self._handles.append(hooked.register_forward_pre_hook(self._make_hook(name), with_kwargs=True))

    def _make_hook(self, name: str):
        def hook(_module, args, kwargs):
            self.onload(name)
            # Top-level tensor inputs only: containers (e.g. the VAE's conv cache) are passed through untouched.
            if not any(_misplaced(v, self.execution_device) for v in (*args, *kwargs.values())):
                return None
            moved_args = tuple(_moved(v, self.execution_device) for v in args)
            return moved_args, {k: _moved(v, self.execution_device) for k, v in kwargs.items()}

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


# Pinned host memory comes from PyTorch's caching host allocator, which rounds every allocation up to a power of two:
# pinning tensor by tensor can cost up to twice the model's size in RAM. Tensors are therefore packed into
# 512 MiB pinned chunks (a power of two: no rounding loss); only larger tensors get their own allocation.
_PIN_CHUNK_BYTES = 1 << 29
_PIN_ALIGN = 64


def _pinned_buffer(nbytes: int) -> torch.Tensor:
    return torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)


def _cpu_copies(tensors: list[torch.Tensor], pin: bool, allocate=_pinned_buffer) -> list[torch.Tensor]:
    """CPU copies of `tensors` (the tensors themselves when not pinning), packed into pinned chunks when `pin`.

    `allocate(nbytes)` returns a uint8 CPU buffer (pinned by default; tests pass a pageable one).
    """
    if not pin:
        return [t.data for t in tensors]
    copies: list[torch.Tensor | None] = [None] * len(tensors)
    batch: list[int] = []
    batch_bytes = 0

    def flush():
        nonlocal batch, batch_bytes
        if not batch:
            return
        try:
            buffer = allocate(batch_bytes)
        except RuntimeError:  # pinned memory is a limited OS resource; pageable still works, just slower
            for i in batch:
                copies[i] = tensors[i].data
            batch, batch_bytes = [], 0
            return
        offset = 0
        for i in batch:
            data = tensors[i].data
            view = buffer[offset: offset + _nbytes(data)].view(data.dtype).view(data.shape)
            view.copy_(data)
            copies[i] = view
            offset = _aligned(offset + _nbytes(data))
        batch, batch_bytes = [], 0

    for i, t in enumerate(tensors):
        size = _aligned(_nbytes(t.data))
        if size > _PIN_CHUNK_BYTES:
            try:
                buffer = allocate(_nbytes(t.data))
                copies[i] = buffer.view(t.data.dtype).view(t.data.shape)
                copies[i].copy_(t.data)
            except RuntimeError:
                copies[i] = t.data
            continue
        if batch_bytes + size > _PIN_CHUNK_BYTES:
            flush()
        batch.append(i)
        batch_bytes += size
    flush()
    return copies


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _aligned(size: int) -> int:
    return (size + _PIN_ALIGN - 1) // _PIN_ALIGN * _PIN_ALIGN


def _misplaced(value, device: torch.device) -> bool:
    return isinstance(value, torch.Tensor) and value.device != device


def _moved(value, device: torch.device):
    return value.to(device) if _misplaced(value, device) else value
