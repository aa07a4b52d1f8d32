"""Casper training: synthesising trimask training tuples and fine-tuning CogVideoX-Fun-V1.5 InP into Casper.

Modules, one idea each:

- `config` — data and training settings (paper defaults), JSON config files;
- `tuples` — the training tuple (input video, trimask, target video);
- `synthetic_source`, `paste_source`, `real_sources` — the four tuple sources (synthetic effect scenes,
  Object-Paste, omnimatte reconstructions, tripod clips);
- `storage` — the on-disk layout of a training set;
- `augment`, `dataset` — clips, crops, label switching, the torch `Dataset` and the category-mixing sampler;
- `components`, `conditioning`, `objective`, `lora` — the model parts, the 33-channel condition, the v-prediction
  loss and LoRA export;
- `trainer`, `checkpoints` — the accelerate training loop and the Casper `.safetensors` checkpoints;
- `synthesize`, `train` — the command-line entry points.

Nothing here is imported by the inference code; `peft` and `accelerate` (the ``train`` extra) are needed only here.
"""
