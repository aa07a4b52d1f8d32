"""Weight-free clean plate and solo videos for locked-off shots: no generative model, CPU-friendly.

With a static camera every background pixel is seen whenever no object stands on it, so the background is the
temporal median of each pixel over the frames where it lies outside every (dilated) object mask. Pixels covered in
every frame were never seen: they are reported (``never_uncovered``) and filled by OpenCV's Telea inpainting, with a
:class:`CleanPlateWarning` saying how much was filled.

A moving camera breaks the premise (the median would blend different places), so the global translation between
frames is measured first (phase correlation on the background outside the masks) and a clip that pans or shakes by
more than ``max_camera_motion`` pixels raises :class:`CameraMotionError`. Only translation is measured; a zoom or
a roll is not detected. Use Casper (generative removal) for such clips, or ``allow_camera_motion=True`` to build a
(blurred) plate anyway.

Solo videos for the omnimatte fit (one per object: the object with its effects, every other object removed) are the
input with the other objects' dilated masks replaced by the plate. Effects of another object that reach beyond its
dilated mask stay in the solo (:func:`~.effect_aware.effect_aware_removal` takes most of them out, at the cost of a
layer fit), and effects of object ``i`` that fall inside another object's dilated mask are lost; Casper handles both.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_masks, check_video, check_width
from .masks import MASK_DILATION, dilate_masks

SOLO_DILATION = 21
"""Width in pixels the *other* objects' masks grow by in a solo video: larger than the plate's, so their soft edges
and contact shadows go too."""
_MOTION_MAX_SIDE = 512  # frames are measured at most this large: phase correlation stays sub-pixel and fast
_MEDIAN_ELEMENTS = 1 << 25  # frames x channels x pixels per median chunk (bounds memory on long HD clips)


class CameraMotionError(ValueError):
    """The clip's camera moves, so a static clean plate would be wrong. ``.motion_px`` holds the measured shift."""

    def __init__(self, message: str, motion_px: float):
        super().__init__(message)
        self.motion_px = motion_px


class CleanPlateWarning(UserWarning):
    """Part of the clean plate was never seen and had to be inpainted."""


@dataclass
class CleanPlate:
    """A static clean background estimated from a locked-off clip.

    - ``plate [3,H,W]`` float 0..1: the background.
    - ``background [T,3,H,W]``: the plate for every frame (a broadcast view of ``plate``; ``.clone()`` to write).
    - ``never_uncovered [1,H,W]`` bool: pixels no frame showed; inpainted in ``plate``.
    - ``visible_frames [1,H,W]`` int64: how many frames showed each pixel (confidence of the median).
    - ``filled_fraction``: share of pixels (0..1) that were inpainted.
    - ``camera_motion_px``: how far the view travels over the clip (extent of the per-frame global shifts), pixels.
    """

    plate: torch.Tensor
    background: torch.Tensor
    never_uncovered: torch.Tensor
    visible_frames: torch.Tensor
    filled_fraction: float
    camera_motion_px: float


# --------------------------------------------------------------------------------------------------------------------
# Camera motion


def phase_correlation(reference: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
    """Global translation ``[B,2]`` (dx, dy in pixels) that maps ``reference [B,H,W]`` onto ``moved [B,H,W]``
    (``moved(x) ~ reference(x - d)``), sub-pixel by a parabola through the correlation peak.

    Written on ``torch.fft`` (batched, any device) because OpenCV 5's ``phaseCorrelate`` reports a 0.5 px shift
    between identical images, which would flag every tripod shot."""
    if reference.ndim != 3 or reference.shape != moved.shape:
        raise ValueError(f"reference and moved must both be [B,H,W] of one shape, got {list(reference.shape)} and "
                         f"{list(moved.shape)}")
    b, h, w = reference.shape
    window = torch.outer(torch.hann_window(h, periodic=False, dtype=torch.float64, device=reference.device),
                         torch.hann_window(w, periodic=False, dtype=torch.float64, device=reference.device))

    def spectrum(x):
        x = x.double()
        return torch.fft.rfft2((x - x.mean(dim=(1, 2), keepdim=True)) * window)

    cross = spectrum(moved) * spectrum(reference).conj()
    surface = torch.fft.irfft2(cross / cross.abs().clamp_min(1e-12), s=(h, w))  # [B,H,W]
    peak = surface.reshape(b, -1).argmax(dim=1)
    py, px = peak // w, peak % w
    rows = torch.arange(b, device=reference.device)

    def refine(centre, size, before, at, after):
        # parabola through three samples; its vertex is the sub-pixel peak
        denominator = before - 2 * at + after
        offset = torch.where(denominator.abs() > 1e-12, 0.5 * (before - after) / denominator, torch.zeros_like(at))
        position = centre.double() + offset.clamp(-0.5, 0.5)
        return torch.where(position > size / 2, position - size, position)  # wrap to signed shifts

    at = surface[rows, py, px]
    dx = refine(px, w, surface[rows, py, (px - 1) % w], at, surface[rows, py, (px + 1) % w])
    dy = refine(py, h, surface[rows, (py - 1) % h, px], at, surface[rows, (py + 1) % h, px])
    return torch.stack([dx, dy], dim=1).float()


def _pair_weight(hide: torch.Tensor, ramp: int) -> torch.Tensor:
    """Weights ``[B,h,w]`` for phase correlation: 0 on hidden pixels with a smooth ramp back to 1, like a window
    function (a hard-edged hole common to both images would correlate with itself and pull towards zero shift)."""
    near = F.avg_pool2d((~hide).float().unsqueeze(1), ramp, stride=1, padding=ramp // 2, count_include_pad=False)
    return (F.avg_pool2d((2 * near - 1).clamp_min(0), ramp, stride=1, padding=ramp // 2,
                         count_include_pad=False)[:, 0] * (~hide))


def _tapered(frames: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    total = weight.sum(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    mean = (frames * weight).sum(dim=(1, 2), keepdim=True) / total
    return (frames - mean) * weight


def measure_camera_motion(video: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
    """Global translation ``[T,2]`` (dx, dy in pixels of ``video``) of each frame relative to the clip's typical view
    (measured against key frames — the first frame until the view has moved by a fifth of the frame — and re-centred
    on the median shift of all frames).

    ``video [T,3,H,W]``; ``masks`` (bool ``[N,T,1,H,W]`` or ``[T,1,H,W]``, optional) mark moving objects, which are
    faded out (smoothly) in both frames of a pair so they cannot vote for their own motion. Re-centring on the
    median makes one bumped frame (even the first) stand out alone instead of making every other frame look shifted.
    Phase correlation (:func:`phase_correlation`) on grey frames scaled to at most 512 px.
    """
    t, _, h, w = video.shape
    scale = min(1.0, _MOTION_MAX_SIDE / max(h, w))
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    grey = video.detach().float().mean(dim=1, keepdim=True)
    grey = F.interpolate(grey, size=size, mode="area") if size != (h, w) else grey
    if masks is not None:
        covered = masks.reshape(-1, t, 1, h, w).any(dim=0).float().to(grey.device)
        covered = F.interpolate(covered, size=size, mode="area") > 0 if size != (h, w) else covered > 0
    else:
        covered = torch.zeros(t, 1, *size, dtype=torch.bool, device=grey.device)
    grey, covered = grey[:, 0], covered[:, 0]
    if t < 2:
        return torch.zeros(t, 2, device=grey.device)
    # Each frame is measured against a key frame, at first the first frame. When two frames in a row have moved by
    # more than a fifth of the frame from it, the first of them becomes the next key frame: against the first frame
    # alone, the last frames of a long pan share almost nothing with it, and the holes common to both then correlate
    # with themselves at zero shift (a 280 px pan passed as locked off). One odd frame (a bump, or unmasked motion
    # voting) never moves the key; short motion is measured exactly as against one frame.
    ramp = max(3, round(0.04 * min(size))) | 1
    hop = 0.2 * min(size)
    shifts = torch.zeros(t, 2, device=grey.device)
    key, far_before = 0, False
    for i in range(1, t):
        hide = (covered[key] | covered[i]).unsqueeze(0)  # hidden in either frame of the pair
        if bool(hide.all()):
            shifts[i] = shifts[key]  # no common background: no measurement
            far_before = False
            continue
        weight = _pair_weight(hide, ramp)
        step = phase_correlation(_tapered(grey[key:key + 1], weight), _tapered(grey[i:i + 1], weight))[0]
        shifts[i] = shifts[key] + step
        far = float(step.abs().max()) > hop
        if far and far_before:
            key, far = i - 1, False
        far_before = far
    shifts -= shifts.median(dim=0).values
    return shifts * torch.tensor([w / size[1], h / size[0]], device=shifts.device)  # back to full-res pixels


def _check_camera(video, covered, allow_camera_motion: bool, max_camera_motion: float) -> float:
    """Raise :class:`CameraMotionError` when more than a quarter of the frames are shifted by more than
    ``max_camera_motion`` from the median view (a few bumped frames do not spoil a median); return the camera's
    travel in pixels (extent of all shifts)."""
    if video.shape[0] < 2:
        return 0.0
    shifts = measure_camera_motion(video, covered).cpu()
    travel = float((shifts.amax(dim=0) - shifts.amin(dim=0)).norm())
    displaced = float(torch.quantile(shifts.norm(dim=1), 0.75))
    if displaced > max_camera_motion and not allow_camera_motion:
        (dx_lo, dy_lo), (dx_hi, dy_hi) = shifts.amin(dim=0).tolist(), shifts.amax(dim=0).tolist()
        raise CameraMotionError(
            f"video: the camera moves (pans or shakes) by {travel:.1f} px over the clip (horizontal "
            f"{dx_lo:+.1f}..{dx_hi:+.1f} px, vertical {dy_lo:+.1f}..{dy_hi:+.1f} px around the median view; a quarter "
            f"of the frames are off by more than {displaced:.1f} px); the clean plate needs a locked-off shot. Use "
            f"Casper (generative removal) for moving-camera clips, or pass allow_camera_motion=True to build a "
            f"blurred plate anyway (tolerance max_camera_motion={max_camera_motion} px).", travel)
    return travel


# --------------------------------------------------------------------------------------------------------------------
# Plate


def _masked_temporal_median(video: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Per pixel the median over frames where ``visible [T,1,H,W]``; NaN where no frame is visible. ``[3,H,W]``."""
    t, c, h, w = video.shape
    plate = torch.empty(c, h, w, dtype=torch.float32, device=video.device)
    rows = max(1, _MEDIAN_ELEMENTS // max(1, t * c * w))
    for top in range(0, h, rows):
        band = slice(top, min(h, top + rows))
        values = torch.where(visible[:, :, band], video[:, :, band].float(),
                             torch.tensor(float("nan"), device=video.device))
        plate[:, band] = values.nanmedian(dim=0).values
    return plate


def _inpaint(plate: torch.Tensor, hole: torch.Tensor, radius: int) -> torch.Tensor:
    """Fill ``hole [H,W]`` (bool) of ``plate [3,H,W]`` by Telea inpainting, channel by channel in 16 bits.

    16-bit rather than float: OpenCV 5's Telea returns garbage (negative values) for float32 images."""
    image = torch.nan_to_num(plate, nan=0.0).clamp(0, 1).cpu().numpy()
    image = np.round(image * 65535.0).astype(np.uint16)
    hole_u8 = hole.cpu().numpy().astype(np.uint8)
    filled = np.stack([cv2.inpaint(np.ascontiguousarray(channel), hole_u8, radius, cv2.INPAINT_TELEA)
                       for channel in image]).astype(np.float32) / 65535.0
    return torch.from_numpy(filled).to(plate.device).clamp(0, 1)


def estimate_clean_plate(video: torch.Tensor, masks: torch.Tensor, *, dilate: int = MASK_DILATION,
                         inpaint_radius: int = 5, allow_camera_motion: bool = False,
                         max_camera_motion: float = 1.0) -> CleanPlate:
    """A clean background plate from a locked-off clip and its object masks (see the module doc).

    Args:
        video: ``[T,3,H,W]`` frames, 0..1.
        masks: ``[N,T,1,H,W]`` or ``[N,T,H,W]`` object masks (above 0.5 counts), same T, H, W as ``video``.
        dilate: width in pixels of the square dilation of the masks before they are excluded (catches mask edges,
            soft shadows right at the object); 11 as for the trimask.
        inpaint_radius: neighbourhood radius in pixels of OpenCV's Telea inpainting for never-seen pixels.
        allow_camera_motion: build the plate even when the camera moves (the result is then blurred).
        max_camera_motion: global shift in pixels from the median view up to which a frame counts as locked off
            (tripod jitter); the clip is refused when more than a quarter of its frames exceed it.

    Returns a :class:`CleanPlate`. Raises :class:`CameraMotionError` (a ``ValueError``) for a moving camera and
    ``ValueError`` naming the argument for bad inputs. Warns with :class:`CleanPlateWarning` when pixels had to be
    inpainted, giving the share.
    """
    # 1. Check inputs (cheap first)
    video = check_video(video)
    masks = check_masks(masks, video)
    dilate = check_width(dilate, "dilate")
    inpaint_radius = check_width(inpaint_radius, "inpaint_radius")
    if isinstance(max_camera_motion, bool) or not isinstance(max_camera_motion, (int, float)) \
            or not max_camera_motion >= 0:
        raise ValueError(f"max_camera_motion must be a shift in pixels >= 0, got {max_camera_motion!r}")

    # 2. Refuse a moving camera before the expensive median
    covered = dilate_masks(masks.any(dim=0), dilate)  # [T,1,H,W]
    motion = _check_camera(video, covered, allow_camera_motion, float(max_camera_motion))

    # 3. Median of the uncovered samples, then fill what no frame showed
    visible = ~covered
    plate = _masked_temporal_median(video, visible)
    visible_frames = visible.sum(dim=0)  # [1,H,W]
    never = visible_frames == 0
    filled_fraction = float(never.float().mean())
    if filled_fraction > 0:
        if filled_fraction == 1.0:
            raise ValueError("masks: every pixel is covered by a (dilated) object mask in every frame, so no "
                             "background is ever visible; use smaller masks or a smaller dilate")
        inpainted = _inpaint(plate, never[0], max(1, inpaint_radius))
        plate = torch.where(never, inpainted, plate)
        warnings.warn(f"clean plate: {100 * filled_fraction:.2f} % of the pixels were covered in every frame and "
                      "were filled by inpainting (see CleanPlate.never_uncovered); they may look smeared. Use Casper "
                      "(generative removal) for a plausible fill.", CleanPlateWarning, stacklevel=2)
    plate = plate.clamp(0, 1).to(video.dtype)
    t = video.shape[0]
    return CleanPlate(plate=plate, background=plate.unsqueeze(0).expand(t, -1, -1, -1), never_uncovered=never,
                      visible_frames=visible_frames.long(), filled_fraction=filled_fraction,
                      camera_motion_px=motion)


def solo_videos(video: torch.Tensor, masks: torch.Tensor, plate: torch.Tensor | CleanPlate, *,
                dilate: int = SOLO_DILATION) -> torch.Tensor:
    """One solo video per object: the input with every *other* object (dilated by ``dilate`` px) replaced by the plate.

    Args:
        video: ``[T,3,H,W]`` frames, 0..1.
        masks: ``[N,T,1,H,W]`` or ``[N,T,H,W]`` object masks.
        plate: a :class:`CleanPlate`, a plate ``[3,H,W]`` or a background video ``[T,3,H,W]``.
        dilate: square dilation in pixels of the other objects' masks; larger than the plate's dilation so that
            their soft edges and contact shadows go too. Object ``i``'s own (undilated) mask is never replaced.

    Returns ``[N,T,3,H,W]``; for one object that is the input itself (as a copy).
    """
    video = check_video(video)
    masks = check_masks(masks, video)
    dilate = check_width(dilate, "dilate")
    if isinstance(plate, CleanPlate):
        plate = plate.plate
    if not isinstance(plate, torch.Tensor):
        raise TypeError(f"plate must be a CleanPlate or a tensor [3,H,W]/[T,3,H,W], got {type(plate).__name__}")
    t, _, h, w = video.shape
    if plate.ndim == 3:
        plate = plate.unsqueeze(0)
    if plate.ndim != 4 or plate.shape[0] not in (1, t) or tuple(plate.shape[1:]) != (3, h, w):
        raise ValueError(f"plate must be [3,H,W] or [T,3,H,W] = {[t, 3, h, w]} to match the video, "
                         f"got {list(plate.shape)}")
    plate = plate.to(video)
    grown = dilate_masks(masks, dilate)  # [N,T,1,H,W]
    total = grown.sum(dim=0)  # how many objects' dilated masks cover each pixel
    solos = []
    for i in range(masks.shape[0]):
        others = (total - grown[i].long()) > 0
        replace = others & ~masks[i]
        solos.append(torch.where(replace, plate, video))
    return torch.stack(solos)
