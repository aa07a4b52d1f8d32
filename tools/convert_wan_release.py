"""Convert the two ``.pth`` files of a Wan2.1-Fun-InP release folder to ``.safetensors``, once, beside them.

    python tools/convert_wan_release.py models/Fun_Models/Wan2.1-Fun-1.3B-InP

The node pack reads weights from safetensors only; the release ships its VAE (``Wan2.1_VAE.pth``) and text encoder
(``models_t5_umt5-xxl-enc-bf16.pth``) in no other format. This script, run by the user outside ComfyUI, reads each
with ``torch.load(weights_only=True)`` — PyTorch's restricted unpickler, which rebuilds tensors and plain containers
only and refuses anything else — checks that it is a dict of tensors, and writes ``<stem>.safetensors``. An existing
``.safetensors`` is never overwritten; the ``.pth`` files are left in place.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

STEMS = ("Wan2.1_VAE", "models_t5_umt5-xxl-enc-bf16")  # casper_core.wan_loading.VAE_STEM, TEXT_ENCODER_STEM


def convert(base_dir) -> list[Path]:
    """Write ``<stem>.safetensors`` for each release ``.pth`` in ``base_dir`` that has none; returns what was written."""
    base = Path(base_dir)
    if not base.is_dir():
        raise FileNotFoundError(f"base_dir {base} is not a folder")
    written = []
    for stem in STEMS:
        source, target = base / f"{stem}.pth", base / f"{stem}.safetensors"
        if target.exists():
            continue
        if not source.is_file():
            raise FileNotFoundError(f"base_dir {base} lacks {source.name} (and {target.name})")
        try:
            state = torch.load(source, map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:  # noqa: BLE001  (UnpicklingError for a refused object, RuntimeError, OSError)
            raise ValueError(f"{source}: not a readable tensor file for torch.load(weights_only=True) ({error}); it "
                             "is truncated, corrupt, or holds more than tensors") from error
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{source}: expected a dict of tensors (a state dict), got {type(state).__name__}")
        # safetensors stores each tensor on its own: copies, so views of one storage are written as they read
        save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(target))
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_dir", help="the Wan2.1-Fun-InP release folder")
    for path in convert(parser.parse_args().base_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
