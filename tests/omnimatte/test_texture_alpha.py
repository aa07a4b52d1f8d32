"""Reading a translucent layer's opacity from the background's texture showing through it (``texture_alpha``)."""
import torch

from omnimatte_core.fit import minimal_alpha
from omnimatte_core.input_alignment import gaussian_blur
from omnimatte_core.texture_alpha import texture_alpha

T, H, W = 4, 64, 96
NOISE = 4 / 255  # on each video
POOL = 4.0


def _texture(seed: int, amplitude: float = 0.12) -> torch.Tensor:
    """A textured ground ``[T,3,H,W]`` (grain of a few pixels) around a brownish mean."""
    g = torch.Generator().manual_seed(seed)
    grain = gaussian_blur(torch.randn(T, 3, H, W, generator=g), 1.2)
    grain = grain / grain.std()
    mean = torch.tensor([0.55, 0.45, 0.35]).view(1, 3, 1, 1)
    return (mean + amplitude * grain).clamp(0, 1)


def _noisy(x: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + NOISE * torch.randn(x.shape, generator=g)).clamp(0, 1)


def _layer_region():
    """A square translucent region away from a small object in the corner: ``(region [T,1,H,W], mask)``."""
    region = torch.zeros(T, 1, H, W)
    region[..., 16:48, 40:80] = 1.0
    mask = torch.zeros(T, 1, H, W)
    mask[..., 2:12, 2:12] = 1.0
    return region, mask


def _read(solo, background, mask, noise=NOISE):
    sigma = torch.full((1, 3), noise * 2 ** 0.5)  # both videos' noise
    return texture_alpha(solo.unsqueeze(1), background.unsqueeze(1), mask.unsqueeze(1), sigma, POOL)[:, 0]


def test_a_tinted_layer_is_read_at_its_alpha_not_its_least_opacity():
    ground = _texture(0)
    region, mask = _layer_region()
    alpha = 0.3 * region
    colour = 0.75 * ground.mean(dim=(-2, -1), keepdim=True)  # dust a little darker than the ground's mean
    solo = alpha * colour + (1 - alpha) * ground
    solo, background = _noisy(solo, 1), _noisy(ground, 2)
    reading = _read(solo, background, mask)
    inner = torch.zeros_like(region, dtype=torch.bool)
    inner[..., 22:42, 48:72] = True  # a pooling width inside the region
    assert (reading[inner] - 0.3).abs().mean() < 0.05
    assert (reading[inner] > 0.15).float().mean() > 0.95
    # what the colour difference alone says: the least opacity of this layer is far lower, and under the noise
    # about half of it is hidden
    assert minimal_alpha(solo, background)[inner].median() < 0.15
    outside = torch.ones_like(region, dtype=torch.bool)
    outside[..., 8:56, 28:92] = False
    assert (reading[outside] > 0.05).float().mean() < 0.01


def test_noise_alone_reads_as_no_layer():
    ground = _texture(3)
    _, mask = _layer_region()
    reading = _read(_noisy(ground, 4), _noisy(ground, 5), mask)
    assert (reading > 0.05).float().mean() < 0.01


def test_a_layer_with_texture_of_its_own_is_not_read():
    # a reflection: the layer's colour has its own grain, so the attenuated background does not explain the solo's
    # detail and the regression says nothing about alpha
    ground, own = _texture(6), _texture(7, amplitude=0.2)
    region, mask = _layer_region()
    alpha = 0.4 * region
    solo = _noisy(alpha * own + (1 - alpha) * ground, 8)
    reading = _read(solo, _noisy(ground, 9), mask)
    inner = torch.zeros_like(region, dtype=torch.bool)
    inner[..., 22:42, 48:72] = True  # at its border the pooled neighbourhood is mostly bare ground
    assert (reading[inner] > 0.05).float().mean() < 0.05


def test_no_reading_without_texture_or_near_the_object():
    flat = torch.full((T, 3, H, W), 0.5)
    region, mask = _layer_region()
    alpha = 0.3 * region
    solo = _noisy(alpha * 0.3 + (1 - alpha) * flat, 10)
    assert _read(solo, _noisy(flat, 11), mask).abs().max() == 0
    # the object's own texture is never compared with the ground's
    ground = _texture(12)
    solo = torch.where(mask.bool(), _texture(13), ground)
    reading = _read(_noisy(solo, 14), _noisy(ground, 15), mask)
    assert reading[..., :14, :14].abs().max() == 0


def test_detail_lost_everywhere_is_not_read_as_opacity():
    # compression or resampling soften the solo's fine detail over the whole frame; the estimate far from the object
    # sets the level that counts as nothing
    ground = _texture(16)
    region, mask = _layer_region()
    soft = gaussian_blur(ground, 0.8)
    reading = _read(_noisy(soft, 17), _noisy(ground, 18), mask)
    assert (reading > 0.05).float().mean() < 0.02


def test_the_fit_start_follows_the_reading_only_where_it_counts():
    # the per-channel least opacities of a coloured change lighten sparsity by their spread: a lift must not flatten
    # them anywhere the texture says nothing
    from omnimatte_core.fit import _lift_by_texture, _readings
    from omnimatte_core.presets import resolve_config

    config = resolve_config("default", "base")
    ground = _texture(20)
    region, mask = _layer_region()
    alpha = 0.3 * region
    colour = 0.75 * ground.mean(dim=(-2, -1), keepdim=True)
    solo = _noisy(alpha * colour + (1 - alpha) * ground, 21).unsqueeze(1)
    background = _noisy(ground, 22).unsqueeze(1)
    channel_alpha = torch.rand(T, 1, 3, H, W, generator=torch.Generator().manual_seed(23)) * 0.05
    noise = (torch.full((1, 3), NOISE * 2 ** 0.5), torch.zeros(1, 3))
    config = config.with_overrides(motion_reading=False)  # the texture's reading alone
    readings = _readings(solo, background, mask.unsqueeze(1), channel_alpha, noise, config)
    lifted, follow = _lift_by_texture(channel_alpha, readings, config)
    changed = (lifted != channel_alpha).any(dim=2)
    assert changed[region.bool()].float().mean() > 0.5
    beyond = torch.ones_like(changed)
    beyond[..., 8:56, 32:88] = False  # the region and the few pixels its pooled reading spills onto
    assert not changed[beyond].any()
    assert torch.equal(lifted[~changed.unsqueeze(2).expand_as(lifted)],
                       channel_alpha[~changed.unsqueeze(2).expand_as(lifted)])
    assert (lifted >= channel_alpha).all()
    assert (lifted.amax(dim=2)[region.bool()] - 0.3).abs().median() < 0.08
    assert torch.equal(follow > 0, changed.unsqueeze(2))
    no_texture = config.with_overrides(texture_pool=0)
    unlifted, no_follow = _lift_by_texture(
        channel_alpha, _readings(solo, background, mask.unsqueeze(1), channel_alpha, noise, no_texture), no_texture)
    assert unlifted is channel_alpha and no_follow is None


def _shared_scene(one_video: bool):
    """Two objects' solos over one background, both objects in the bottom-right corner. Object 0 has a 30 % dust veil
    in the middle; left of it the background is sharper than the solos (their detail there attenuated by 30 %, as a
    resampled or compressed plate can differ from the generations). ``one_video``: the solos are one video outside
    the objects (the weight-free clean plate's solos, which keep every object's effects), else separate generations
    with object 0's veil removed from object 1's solo (a removal model's).
    Returns ``(solos, background, masks, sigma, inner_veil, inner_shared)``."""
    ground = _texture(0)
    region, mask = _layer_region()
    shared = torch.zeros_like(region)
    shared[..., 22:46, 4:28] = 1.0  # left of the veil, away from the masks' corner
    mask[..., 2:12, 2:12] = 0.0
    mask[..., 52:62, 84:94] = 1.0
    smooth = gaussian_blur(ground, 3.0)
    dulled = smooth + (1 - 0.3 * shared) * (ground - smooth)
    colour = 0.75 * ground.mean(dim=(-2, -1), keepdim=True)
    veiled = _noisy(0.3 * region * colour + (1 - 0.3 * region) * dulled, 1)
    solos = torch.stack([veiled, veiled.clone() if one_video else _noisy(dulled, 3)], dim=1)
    background = _noisy(ground, 2).unsqueeze(1).expand_as(solos)
    masks = mask.unsqueeze(1).expand(-1, 2, -1, -1, -1)
    sigma = torch.full((2, 3), NOISE * 2 ** 0.5)
    inner_veil = (slice(None), slice(None), slice(22, 42), slice(48, 72))
    inner_shared = (slice(None), slice(None), slice(26, 42), slice(8, 24))
    return solos, background, masks, sigma, inner_veil, inner_shared


def test_a_reading_every_separate_solo_shares_is_the_background_not_an_effect():
    """Separate solos: object 1's layer alone reads the sharper region as a layer; together only object 0's veil is
    read, and only in object 0's layer, since object 1's solo has that veil removed."""
    solos, background, masks, sigma, inner_veil, inner_shared = _shared_scene(one_video=False)
    alone = texture_alpha(solos[:, 1:], background[:, 1:], masks[:, 1:], sigma[1:], POOL)[:, 0]
    assert float(alone[inner_shared].mean()) > 0.2, float(alone[inner_shared].mean())  # what this guards against
    together = texture_alpha(solos, background, masks, sigma, POOL)
    assert float(together[:, 0][inner_shared].mean()) < 0.03
    assert float(together[:, 1][inner_shared].mean()) < 0.03
    assert abs(float(together[:, 0][inner_veil].mean()) - 0.3) < 0.05
    assert float(together[:, 1][inner_veil].mean()) < 0.03


def test_where_the_solos_are_one_video_a_shared_reading_is_kept():
    """Clean-plate solos are one video outside the other objects' masks, so every effect is in every solo: what the
    layers share there may be an effect, and each layer reads what it reads alone (the veil at 0.3 in both)."""
    solos, background, masks, sigma, inner_veil, _ = _shared_scene(one_video=True)
    together = texture_alpha(solos, background, masks, sigma, POOL)
    for i in range(2):
        alone = texture_alpha(solos[:, i:i + 1], background[:, i:i + 1], masks[:, i:i + 1], sigma[i:i + 1], POOL)
        assert torch.equal(together[:, i], alone[:, 0])
        assert abs(float(together[:, i][inner_veil].mean()) - 0.3) < 0.05
