"""Reading a moving layer's opacity from the background's change under it (``motion_alpha``)."""
import torch

from omnimatte_core.fit import minimal_alpha
from omnimatte_core.input_alignment import gaussian_blur, shift_frames
from omnimatte_core.motion_alpha import layer_shift, motion_alpha
from omnimatte_core.texture_alpha import texture_alpha

T, H, W = 6, 64, 96
NOISE = 2 / 255  # on each video
POOL = 4.0
ALPHA = 0.4
STEP = (3.0, 1.0)  # the layer's motion per frame (dx, dy), pixels


def _grain(seed: int, shape, amplitude: float, mean) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    grain = gaussian_blur(torch.randn(*shape, generator=g), 1.2)
    return (torch.tensor(mean).view(1, 3, 1, 1) + amplitude * grain / grain.std()).clamp(0, 1)


def _scene(step=STEP, seed: int = 0):
    """A static textured ground under a translucent layer as textured as a reflection (its own grain, stronger than
    the ground's), moving by ``step`` per frame, with independent noise on the solo and the background.
    Returns ``(solo, background, clean solo, clean background, layer alpha, object mask)``, all ``[T,C,H,W]``."""
    ground = _grain(seed, (1, 3, H, W), 0.10, (0.35, 0.40, 0.45)).expand(T, -1, -1, -1)
    colour = _grain(seed + 1, (1, 3, H, W), 0.20, (0.70, 0.65, 0.60)).expand(T, -1, -1, -1)
    alpha = torch.zeros(1, 1, H, W)
    alpha[..., 20:44, 20:52] = ALPHA
    alpha = alpha.expand(T, -1, -1, -1)
    # the layer (colour and alpha) moves; frame k shows it shifted by k·step
    shift = torch.tensor([[-step[0] * k, -step[1] * k] for k in range(T)])
    moved = shift_frames(torch.cat([colour, alpha], 1).contiguous(), shift)
    colour, alpha = moved[:, :3].clamp(0, 1), moved[:, 3:].clamp(0, 1)
    clean = alpha * colour + (1 - alpha) * ground
    mask = torch.zeros(T, 1, H, W)
    mask[..., 2:10, 2:10] = 1.0
    g = torch.Generator().manual_seed(seed + 2)
    solo = (clean + NOISE * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    background = (ground + NOISE * torch.randn(ground.shape, generator=g)).clamp(0, 1)
    return solo, background, clean, ground, alpha, mask


def _read(solo, background, clean, ground, mask):
    sigma = torch.full((1, 3), NOISE * 2 ** 0.5)  # both videos' noise
    least = minimal_alpha(clean, ground)  # the fit's least opacity has the noise set aside
    alpha, trust = motion_alpha(solo.unsqueeze(1), background.unsqueeze(1), mask.unsqueeze(1), least.unsqueeze(1),
                                sigma, POOL)
    return (alpha * trust)[:, 0]


def test_layer_shift_recovers_a_sub_pixel_translation():
    blobs = _grain(3, (1, 3, H, W), 1.0, (0.0, 0.0, 0.0))[0, 0].clamp_min(0)
    moved = shift_frames(blobs[None, None], torch.tensor([[-2.3, 1.6]]))[0, 0]  # content moves by (+2.3, −1.6)
    dx, dy = layer_shift(blobs, moved)
    assert abs(dx - 2.3) < 0.15 and abs(dy + 1.6) < 0.15, (dx, dy)


def test_a_textured_moving_layer_is_read_at_its_alpha():
    solo, background, clean, ground, alpha, mask = _scene()
    reading = _read(solo, background, clean, ground, mask)
    interior = torch.zeros_like(alpha, dtype=torch.bool)
    for k in range(T):  # the layer's interior, 4 px in from its edge, in frame k
        x0, y0 = 20 + STEP[0] * k, 20 + STEP[1] * k
        interior[k, :, int(y0) + 4:int(y0) + 20, int(x0) + 4:int(x0) + 28] = True
    values = reading[interior]
    assert (values > 0).float().mean() > 0.8, (values > 0).float().mean()
    assert abs(values[values > 0].median() - ALPHA) < 0.05, values[values > 0].median()
    # Why it is needed: the least opacity of this light layer over darker ground is well below its alpha, and the
    # single-frame texture reading takes the layer's own grain for the ground's and reads almost nothing.
    assert minimal_alpha(clean, ground)[interior].median() < ALPHA - 0.15
    single = texture_alpha(solo.unsqueeze(1), background.unsqueeze(1), mask.unsqueeze(1),
                           torch.full((1, 3), NOISE * 2 ** 0.5), POOL)[:, 0]
    assert (single[interior] > 0).float().mean() < 0.2
    # nothing is read where there is no layer
    outside = gaussian_blur(alpha, 2.0) == 0
    assert reading[outside].abs().max() == 0


def test_a_layer_that_does_not_move_gives_no_reading():
    solo, background, clean, ground, _, mask = _scene(step=(0.0, 0.0))
    assert _read(solo, background, clean, ground, mask).abs().max() == 0
