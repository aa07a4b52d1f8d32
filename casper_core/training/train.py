"""Command line: fine-tune CogVideoX-Fun-V1.5-5b-InP into Casper on a training set.

::

    python -m casper_core.training.train DATA OUT --base-dir CogVideoX-Fun-V1.5-5b-InP [--config config.json]
        [--casper-weights start.safetensors] [--resume OLD_RUN/checkpoints/step_001000] [--mode lora] [--steps N]

    # several GPUs (DDP; train.distributed "fsdp" shards a full fine-tune):
    accelerate launch --num_processes 8 -m casper_core.training.train DATA OUT --base-dir ...

    # the paper's settings as a config file to edit:
    python -m casper_core.training.train --write-config config.json

DATA is a folder written by ``python -m casper_core.training.synthesize``; OUT must not exist. The final Casper
weights are ``OUT/casper_transformer.safetensors`` (Load Casper Model → casper_weights).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import TrainingConfig


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m casper_core.training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, nargs="?", help="training set folder (from synthesize)")
    parser.add_argument("out", type=Path, nargs="?", help="new run folder (must not exist)")
    parser.add_argument("--base-dir", type=Path, help="CogVideoX-Fun-V1.5-5b-InP diffusers folder")
    parser.add_argument("--casper-weights", type=Path, help="start from these Casper .safetensors weights")
    parser.add_argument("--config", type=Path, help="JSON config (sections 'data' and 'train'); default: the paper's")
    parser.add_argument("--resume", type=Path, help="checkpoint folder of an earlier run to continue from")
    parser.add_argument("--mode", choices=("full", "lora"), help="override train.mode")
    parser.add_argument("--steps", type=int, help="override train.steps")
    parser.add_argument("--write-config", type=Path, help="write the default config to this new file and exit")
    args = parser.parse_args(argv)
    if args.write_config is None and (args.data is None or args.out is None or args.base_dir is None):
        parser.error("give DATA, OUT and --base-dir (or --write-config FILE)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.write_config is not None:
        TrainingConfig().save(args.write_config)
        print(f"wrote the default config to {args.write_config}")
        return 0
    config = TrainingConfig.load(args.config) if args.config else TrainingConfig()
    overrides = {key: value for key, value in (("mode", args.mode), ("steps", args.steps)) if value is not None}
    if overrides:
        config = TrainingConfig.from_dict({"data": config.to_dict()["data"], "train": {**config.to_dict()["train"],
                                                                                       **overrides}})
    from .trainer import train

    run = train(config, args.data, args.out, base_dir=args.base_dir, casper_weights=args.casper_weights,
                resume=args.resume)
    print(f"trained {run.step - run.start_step} steps; Casper weights: {run.weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
