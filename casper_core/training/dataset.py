"""Reading a training set back for fine-tuning: a map-style torch `Dataset` and the sampler that mixes categories.

An example is addressed by ``(tuple index, example seed)``; everything random about it (clip, crop, label switching)
follows from the seed. `MixtureSampler` draws the tuple indices with the configured category shares and gives every
example a seed derived from the run seed and the example's global number, so the stream is the same however many
processes share it, and a resumed run continues it exactly.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .augment import crop_video, grow_remove, random_clip, random_crop_box, switch_keep_labels
from .config import CATEGORIES, SWITCHABLE_CATEGORIES, DataConfig
from .storage import read_manifest, read_tuple

logger = logging.getLogger(__name__)
REAL = ("omnimatte", "tripod")


class TupleDataset(Dataset):
    """Examples from a folder written by `casper_core.training.storage` (``python -m casper_core.training.synthesize``).

    ``dataset[(index, seed)]`` returns a dict:

    - ``input``: ``[F,3,h,w]`` float32 0..1 (F = ``clip_frames``, (h, w) = ``crop_size``),
    - ``target``: ``[F,3,h,w]`` float32 0..1,
    - ``trimask``: ``[F,1,h,w]`` float32 in {0, 0.5, 1} (after label switching),
    - ``category``: the tuple's category, ``switched``: how many keep labels were switched to neutral.
    """

    def __init__(self, root, config: DataConfig | None = None):
        self.root = Path(root)
        self.config = config or DataConfig()
        self.entries = read_manifest(self.root)
        if not self.entries:
            raise ValueError(f"{self.root}: the training set has no tuples")
        self.categories = [entry["category"] for entry in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, key)
        config = self.config
        example = read_tuple(self.root / self.entries[index]["folder"])
        rng = np.random.default_rng([int(seed), int(index), 3])
        frames = random_clip(example.num_frames, config.clip_frames, rng)
        resized, box = random_crop_box(example.size, config.crop_size, rng)
        input_video = crop_video(example.input_video[frames].permute(0, 3, 1, 2), resized, box)
        target_video = crop_video(example.target_video[frames].permute(0, 3, 1, 2), resized, box)
        trimask = crop_video(example.trimask[frames][:, None], resized, box, mode="nearest")[:, 0]
        keep_masks = example.keep_masks[:, frames]
        if keep_masks.shape[0]:
            keep_masks = crop_video(keep_masks.float(), resized, box, mode="nearest") > 0.5
        switched = 0
        if example.category in SWITCHABLE_CATEGORIES and config.keep_to_neutral > 0:
            trimask, switched = switch_keep_labels(trimask, keep_masks, config.keep_to_neutral, rng)
        trimask = grow_remove(trimask, config.dilate)
        return {
            "input": input_video.clamp(0, 1).contiguous(),
            "target": target_video.clamp(0, 1).contiguous(),
            "trimask": trimask[:, None].contiguous(),
            "category": example.category,
            "switched": switched,
        }


def group_shares(categories: list[str], mix: dict) -> dict[str, float]:
    """Per-category sampling shares from the config's `mix` and the categories present.

    ``"real"`` splits over omnimatte and tripod in proportion to their tuple counts; groups with no tuples are
    dropped (logged) and the rest renormalised.
    """
    counts = {category: categories.count(category) for category in CATEGORIES}
    shares = {}
    for group, share in mix.items():
        members = REAL if group == "real" else (group,)
        total = sum(counts[m] for m in members)
        if total == 0:
            if share > 0:
                logger.warning("data.mix: no %s tuples in the training set; its share %.3g is spread over the rest",
                               group, share)
            continue
        for member in members:
            shares[member] = shares.get(member, 0.0) + share * counts[member] / total
    total = sum(shares.values())
    if total <= 0:
        raise ValueError(f"data.mix {mix}: no category with a positive share has tuples (present: "
                         f"{ {k: v for k, v in counts.items() if v} })")
    return {category: share / total for category, share in shares.items() if share > 0}


class MixtureSampler(Sampler):
    """An endless stream of ``(tuple index, example seed)`` for one process.

    Example number ``n`` (global over processes: ``n = step × batch + rank-major position``) draws its category by the
    shares, then a tuple of that category uniformly, from a generator seeded by ``(seed, n)``. Process `rank` of
    `world_size` takes the numbers ``rank, rank + world_size, …`` starting at `start`.
    """

    def __init__(self, categories: list[str], mix: dict, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 start: int = 0):
        self.shares = group_shares(categories, mix)
        self.names = sorted(self.shares)
        self.probabilities = np.array([self.shares[name] for name in self.names])
        self.members = {name: np.flatnonzero(np.array(categories) == name) for name in self.names}
        self.seed, self.rank, self.world_size, self.start = seed, rank, world_size, start

    def draw(self, number: int) -> tuple[int, int]:
        """The ``(tuple index, example seed)`` of global example `number`."""
        rng = np.random.default_rng([self.seed, number, 5])
        category = self.names[int(rng.choice(len(self.names), p=self.probabilities))]
        members = self.members[category]
        return int(members[int(rng.integers(len(members)))]), int(rng.integers(0, 2**31 - 1))

    def __iter__(self):
        number = self.start + self.rank
        while True:
            yield self.draw(number)
            number += self.world_size

    def __len__(self) -> int:  # endless; DataLoader only needs it for progress estimates
        return 2**31 - 1


def collate(examples: list[dict]) -> dict:
    """Stack examples into a batch (tensors gain a leading batch dimension; strings and counts become lists)."""
    batch = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch
