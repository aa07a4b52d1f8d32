"""Trimask jobs: what Casper is asked to remove, keep, or treat as background in each run.

A trimask is one value per pixel and frame: 1.0 *remove*, 0.5 *neutral* (background, free to change), 0.0 *keep*
(the public reference's internal convention). A video with N objects gives:

- ``background``: every object → remove, everything else → neutral (the clean plate);
- for N > 1, ``solo_i``: object i → keep, every other object → remove, the rest → neutral; where the dilated keep
  and remove masks overlap, remove wins. (With one object its solo video is the input itself, so no job is made.)

Object masks are area-resized (when a size is given), binarised (a pixel counts when its value is ≥ 240/255) and
dilated with a square footprint, as the reference does for per-object masks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .shared import MASK_DILATION, dilate_masks

REMOVE = 1.0
NEUTRAL = 0.5
KEEP = 0.0
# A resized mask pixel counts as object when it is at least this full (the reference keeps values ≥ 240 of 255).
MASK_THRESHOLD = 240.0 / 255.0
# Trimask *files* (videos) use the opposite convention: white keep, mid-grey neutral, black remove; these are the
# reference's quantisation thresholds on 0..255 values (> 192 keep, 64..192 neutral, < 64 remove).
FILE_KEEP_ABOVE = 192.0 / 255.0
FILE_REMOVE_BELOW = 64.0 / 255.0
# How far outside 0..1 a float input may stray and still be taken as 0..1 (the overshoot of bicubic or Lanczos
# resizing); anything further out is refused (a 0..255 picture, say).
VALUE_TOLERANCE = 0.1


@dataclass
class TrimaskJobs:
    """Named trimask jobs for one video.

    Attributes:
        names: one name per job (``"background"``, ``"solo_0"``, …).
        trimasks: ``[J,T,H,W]`` float32 in {0, 0.5, 1} (1 remove, 0.5 neutral, 0 keep). Values must be finite
            and in 0..1 (`check_unit_values`); the pipeline snaps them to the three levels.
    """

    names: list[str]
    trimasks: torch.Tensor

    def __post_init__(self):
        self.names = list(self.names)
        if not isinstance(self.trimasks, torch.Tensor) or self.trimasks.ndim != 4:
            shape = tuple(self.trimasks.shape) if isinstance(self.trimasks, torch.Tensor) else type(self.trimasks)
            raise ValueError(f"trimasks: expected a [J,T,H,W] tensor, got {shape}")
        if len(self.names) != self.trimasks.shape[0]:
            raise ValueError(f"names: expected {self.trimasks.shape[0]} names (one per job), got {len(self.names)}")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"names: must be unique, got {self.names}")
        if self.trimasks.shape[0] == 0:
            raise ValueError("trimasks: no jobs (J = 0)")
        check_unit_values("trimasks", self.trimasks, TRIMASK_VALUES)

    def __len__(self) -> int:
        return len(self.names)

    def select(self, names) -> "TrimaskJobs":
        """The jobs named in `names`, in that order."""
        index = [self.names.index(name) for name in names]
        return TrimaskJobs([self.names[i] for i in index], self.trimasks[index])

    @classmethod
    def from_trimask_video(
        cls,
        trimask_video: torch.Tensor,
        *,
        convention: str = "file",
        names=None,
        size: tuple[int, int] | None = None,
    ) -> "TrimaskJobs":
        """Jobs from ready-made trimask videos.

        Args:
            trimask_video: ``[T,H,W]``, ``[T,H,W,C]`` (channel 0 is used), or ``[J,T,H,W]`` for several jobs;
                float in 0..1 (uint8 0..255 is accepted too; a float 0..255 video or NaN is refused, as its
                neutral grey could not be told apart).
            convention: ``"file"`` — as trimask video files are drawn: white (≥ 192/255) keep, grey (64..192)/255
                neutral, black (< 64/255) remove; or ``"internal"`` — 1 remove, 0.5 neutral, 0 keep
                (values > 0.75 remove, 0.25..0.75 neutral, < 0.25 keep).
            names: job names; default ``["background"]`` for one job, ``["job_0", …]`` for several.
            size: ``(height, width)`` to area-resize to before quantising; None keeps the size.

        Returns:
            `TrimaskJobs` with values in {0, 0.5, 1}.
        """
        if convention not in ("file", "internal"):
            raise ValueError(f"convention: expected 'file' or 'internal', got {convention!r}")
        if not isinstance(trimask_video, torch.Tensor):
            raise TypeError(f"trimask_video: expected a torch.Tensor, got {type(trimask_video).__name__}")
        values = trimask_video
        if values.dtype == torch.uint8:
            values = values.float() / 255.0
        values = values.float()
        check_unit_values("trimask_video", values, "float values in 0..1 (or uint8 0..255)")
        if values.ndim == 4 and values.shape[-1] in (1, 3, 4):  # [T,H,W,C]: a picture's widths are never 1..4 px
            values = values[..., 0]
        if values.ndim == 3:
            values = values[None]
        if values.ndim != 4:
            raise ValueError(
                f"trimask_video: expected [T,H,W], [T,H,W,C] or [J,T,H,W], got {tuple(trimask_video.shape)}"
            )
        if size is not None:
            values = _area_resize(values, size)
        if convention == "file":
            trimasks = torch.full_like(values, NEUTRAL)
            trimasks[values > FILE_KEEP_ABOVE] = KEEP
            trimasks[values < FILE_REMOVE_BELOW] = REMOVE
        else:
            trimasks = quantize_trimask(values)
        if names is None:
            names = ["background"] if trimasks.shape[0] == 1 else [f"job_{i}" for i in range(trimasks.shape[0])]
        return cls(list(names), trimasks)


TRIMASK_VALUES = "values in {0, 0.5, 1} or 0..1 (1 remove, 0.5 neutral, 0 keep)"


def check_unit_values(name: str, values: torch.Tensor, expected: str = "values in 0..1") -> None:
    """Refuse NaN / infinite values and values outside 0..1 (beyond `VALUE_TOLERANCE`), naming `name`.

    Bool tensors pass. The message says what was found and that `expected` was expected (0..255 data gets a hint).
    """
    if values.dtype == torch.bool or values.numel() == 0:
        return
    if not values.is_floating_point():
        values = values.float()
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = int(finite.numel() - finite.sum())
        wanted = expected if expected.startswith("finite") else f"finite {expected}"
        raise ValueError(f"{name}: {bad} value(s) are NaN or infinite; expected {wanted}")
    low, high = (float(v) for v in torch.aminmax(values))
    if low < -VALUE_TOLERANCE or high > 1.0 + VALUE_TOLERANCE:
        hint = "; 0..255 data must be divided by 255 first" if high > 1.0 + VALUE_TOLERANCE and high <= 255.5 else ""
        raise ValueError(f"{name}: values range {low:g}..{high:g}, expected {expected}{hint}")


def quantize_trimask(trimask: torch.Tensor) -> torch.Tensor:
    """Snap internal-convention values to {0, 0.5, 1}: > 0.75 remove, 0.25..0.75 neutral, < 0.25 keep."""
    out = torch.full_like(trimask, NEUTRAL)
    out[trimask > 0.75] = REMOVE
    out[trimask < 0.25] = KEEP
    return out


def build_trimask_jobs(
    video: torch.Tensor,
    masks: torch.Tensor,
    *,
    dilate: int = MASK_DILATION,
    size: tuple[int, int] | None = None,
    occluders=None,
) -> TrimaskJobs:
    """Build the clean-background job and one solo job per object (for more than one object).

    Args:
        video: ``[T,H,W,3]`` float 0..1 (only its frame count and size are used, to check the masks).
        masks: ``[N,T,H,W]`` object masks, float 0..1 (or bool); ``[T,H,W]`` is one object. NaN or values far
            outside 0..1 (a 0..255 mask) are refused.
        dilate: width in pixels of the square dilation footprint (at the output size); 0 disables.
        size: ``(height, width)`` of the trimasks; the masks are area-resized to it. None keeps the video's size.
        occluders: the occluded-foreground recipe (see `occluders_per_object`): which objects occlude which, as a
            front-to-back order of all objects (``[2, 0, 1]``: object 2 nearest) or as one list per object of the
            objects in front of it (``{0: [1]}`` or ``[[1], []]``). None (default): every other object wins where
            dilated masks overlap, as released.

    The occluded-foreground recipe (supplement, Sec. A and its Fig. 2, "Handling occluded foreground"): when
    something in front of an object hides part of it (a pole in front of a dog), give the occluder a mask of its
    own and remove it in the object's solo job as an extra object. Casper then completes the hidden part of the
    object, and the layer fit gets a solo video and a clean background without the occluder, so the object's
    layer comes out whole. With `occluders`, solo job i removes the objects in front of object i *over* object i's
    own (dilated) mask too — that is where they hide it — while objects behind object i are removed only outside
    object i's mask, so the parts of object i that cover them are kept. The background job removes every object
    either way.

    Returns:
        `TrimaskJobs`: names ``["background", "solo_0", …]``, trimasks ``[J,T,h,w]`` in {0, 0.5, 1}.
    """
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[-1] != 3:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video: expected a [T,H,W,3] tensor, got {shape}")
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks: expected a torch.Tensor [N,T,H,W], got {type(masks).__name__}")
    if masks.ndim == 3:
        masks = masks[None]
    if masks.ndim != 4:
        raise ValueError(f"masks: expected [N,T,H,W], got {tuple(masks.shape)}")
    if masks.shape[0] == 0:
        raise ValueError("masks: no object masks (N = 0); give at least one object to remove")
    frames, height, width = video.shape[:3]
    if masks.shape[1] != frames:
        raise ValueError(f"masks: {masks.shape[1]} frames, but the video has {frames}")
    if tuple(masks.shape[2:]) != (height, width):
        raise ValueError(f"masks: size {tuple(masks.shape[2:])} (H,W), but the video is {(height, width)}")
    if not isinstance(dilate, int) or dilate < 0:
        raise ValueError(f"dilate: expected a width in pixels ≥ 0, got {dilate!r}")
    check_unit_values("masks", masks, "mask values in 0..1 (1 = object)")

    masks = masks.float()
    if size is not None:
        masks = _area_resize(masks, size)
    objects = dilate_masks(masks >= MASK_THRESHOLD, dilate)  # [N,T,h,w] bool
    in_front = None if occluders is None else occluders_per_object(occluders, objects.shape[0])

    any_object = objects.any(dim=0)
    background = torch.where(any_object, REMOVE, NEUTRAL)
    names, trimasks = ["background"], [background]
    if objects.shape[0] > 1:
        for i in range(objects.shape[0]):
            others = torch.cat([objects[:i], objects[i + 1 :]]).any(dim=0)
            solo = torch.full_like(background, NEUTRAL)
            if in_front is None:
                solo[objects[i]] = KEEP
                solo[others] = REMOVE  # written last: remove wins over keep where dilated masks overlap
            else:
                solo[others] = REMOVE
                solo[objects[i]] = KEEP  # object i wins over the objects behind it …
                for j in in_front[i]:
                    solo[objects[j]] = REMOVE  # … and loses to those in front of it (occluded-foreground recipe)
            names.append(f"solo_{i}")
            trimasks.append(solo)
    return TrimaskJobs(names, torch.stack(trimasks).float())


def occluders_per_object(occluders, num_objects: int) -> list[list[int]]:
    """For each object, the objects in front of it (its occluders), from an order or from per-object lists.

    Args:
        occluders: a front-to-back order of all objects (a sequence of the ints ``0..N-1``, each once, nearest
            first: an object's occluders are those before it), or per object the objects in front of it (a
            ``{object: [occluders]}`` dict, objects not named having none, or a sequence of N sequences).
        num_objects: N.

    Returns:
        N lists of object indices. Raises ValueError naming the bad entry.
    """
    def index(value, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < num_objects:
            raise ValueError(f"occluders: {what} {value!r} is not an object index 0..{num_objects - 1}")
        return value

    if isinstance(occluders, dict):
        lists = [[] for _ in range(num_objects)]
        for target, front in occluders.items():
            lists[index(target, "object")] = [index(j, f"occluder of object {target}") for j in front]
    elif isinstance(occluders, (list, tuple)) and all(isinstance(v, (list, tuple)) for v in occluders):
        if len(occluders) != num_objects:
            raise ValueError(f"occluders: {len(occluders)} per-object lists, but there are {num_objects} objects")
        lists = [[index(j, f"occluder of object {i}") for j in front] for i, front in enumerate(occluders)]
    elif isinstance(occluders, (list, tuple)):
        order = [index(v, "entry") for v in occluders]
        if sorted(order) != list(range(num_objects)):
            raise ValueError(f"occluders: a front-to-back order must name each of the {num_objects} objects once, "
                             f"got {list(occluders)}")
        lists = [order[: order.index(i)] for i in range(num_objects)]
    else:
        raise TypeError(f"occluders: expected a front-to-back order or per-object lists, got "
                        f"{type(occluders).__name__}")
    for i, front in enumerate(lists):
        if i in front:
            raise ValueError(f"occluders: object {i} cannot occlude itself")
    return lists


def parse_occluders(text: str):
    """Occluders from text (node and command line): ``"2,0,1"`` is a front-to-back order, ``"0:1,2; 3:1"`` gives
    per object the objects in front of it, ``""`` is None (no recipe)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        if ":" not in text:
            return [int(v) for v in text.replace(" ", "").split(",") if v]
        lists = {}
        for part in text.split(";"):
            if part.strip():
                target, _, front = part.partition(":")
                lists[int(target)] = [int(v) for v in front.replace(" ", "").split(",") if v]
        return lists
    except ValueError as error:
        raise ValueError(f"occluders: expected '2,0,1' (front to back) or '0:1,2; 3:1' (object: the objects in "
                         f"front of it), got {text!r}") from error


def _area_resize(values: torch.Tensor, size) -> torch.Tensor:
    """Area-resize ``[..., H, W]`` to ``size = (h, w)``."""
    if len(tuple(size)) != 2 or min(size) <= 0:
        raise ValueError(f"size: expected (height, width) > 0, got {size!r}")
    shape = values.shape
    flat = values.reshape(-1, 1, *shape[-2:])
    resized = F.interpolate(flat, size=tuple(int(s) for s in size), mode="area")
    return resized.reshape(*shape[:-2], *resized.shape[-2:])
