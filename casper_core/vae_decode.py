"""Decoding latents in the public reference's frame chunks, so a video of F latents gives 4(F−1)+1 frames.

diffusers' `AutoencoderKLCogVideoX.decode` decodes latent frames in pairs (with the odd remainder in the first
chunk) and returns 4F frames for an even F. The reference decodes latent frame 0 alone (spatial upsampling only),
then pairs (1, 2), (3, 4), …, and — F being even — the last frame alone *with* temporal upsampling (4 frames),
carrying the causal convolution cache from chunk to chunk. The result is exactly the padded input length. We call
diffusers' decoder with that chunking; only the single-frame temporal upsampling of the last chunk needs a switch,
because diffusers' `CogVideoXUpsample3D` upsamples a single frame only in space.

With VAE tiling enabled on the VAE, the same chunking runs per spatial tile and the tiles are blended with the VAE's
own `blend_v` / `blend_h` (as `AutoencoderKLCogVideoX.tiled_decode` does).
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F


def decode_chunks(num_latent_frames: int) -> list[tuple[int, int, bool]]:
    """The reference's decode chunks ``(begin, end, upsample_time_of_single_frame)`` over the latent frames."""
    chunks = [(0, 1, False)]
    begin = 1
    while begin < num_latent_frames:
        end = min(begin + 2, num_latent_frames)
        chunks.append((begin, end, True))
        begin = end
    return chunks


def decode_latents(vae, latents: torch.Tensor, progress: Callable[[], None] | None = None) -> torch.Tensor:
    """Decode ``[B,C,F,h,w]`` latents (divided by the scaling factor) to ``[B,3,4(F−1)+1,8h,8w]`` in −1..1.

    ``progress()`` is called after every decoded chunk (of every spatial tile with VAE tiling): `decode_units` times.
    """
    if getattr(vae, "use_tiling", False) and _needs_tiles(vae, latents):
        return _tiled_decode(vae, latents, progress)
    return _decode_tile(vae, latents, progress)


def decode_units(vae, num_latent_frames: int, latent_height: int, latent_width: int) -> int:
    """How many times `decode_latents` reports progress for one video of this latent size."""
    chunks = len(decode_chunks(num_latent_frames))
    if getattr(vae, "use_tiling", False) and _needs_tiles_at(vae, latent_height, latent_width):
        rows, columns = _tile_origins(vae, latent_height, latent_width)
        return chunks * len(rows) * len(columns)
    return chunks


def _decode_tile(vae, z: torch.Tensor, progress: Callable[[], None] | None = None) -> torch.Tensor:
    conv_cache = None
    frames = []
    for begin, end, upsample_single in decode_chunks(z.shape[2]):
        chunk = z[:, :, begin:end]
        if vae.post_quant_conv is not None:
            chunk = vae.post_quant_conv(chunk)
        context = _single_frames_upsample_in_time(vae) if upsample_single and end - begin == 1 else _nothing()
        with context:
            chunk, conv_cache = vae.decoder(chunk, conv_cache=conv_cache)
        frames.append(chunk)
        if progress is not None:
            progress()
    return torch.cat(frames, dim=2)


def _needs_tiles(vae, z: torch.Tensor) -> bool:
    return _needs_tiles_at(vae, z.shape[-2], z.shape[-1])


def _needs_tiles_at(vae, height: int, width: int) -> bool:
    return width > vae.tile_latent_min_width or height > vae.tile_latent_min_height


def _tile_origins(vae, height: int, width: int) -> tuple[range, range]:
    """Top and left latent coordinates of the tiles (the geometry of diffusers' tiled_decode)."""
    overlap_height = int(vae.tile_latent_min_height * (1 - vae.tile_overlap_factor_height))
    overlap_width = int(vae.tile_latent_min_width * (1 - vae.tile_overlap_factor_width))
    return range(0, height, overlap_height), range(0, width, overlap_width)


def _tiled_decode(vae, z: torch.Tensor, progress: Callable[[], None] | None = None) -> torch.Tensor:
    # The tile geometry of diffusers' AutoencoderKLCogVideoX.tiled_decode, with our temporal chunking per tile.
    height, width = z.shape[-2:]
    blend_height = int(vae.tile_sample_min_height * vae.tile_overlap_factor_height)
    blend_width = int(vae.tile_sample_min_width * vae.tile_overlap_factor_width)
    row_limit_height = vae.tile_sample_min_height - blend_height
    row_limit_width = vae.tile_sample_min_width - blend_width
    tops, lefts = _tile_origins(vae, height, width)
    rows = []
    for i in tops:
        row = []
        for j in lefts:
            tile = z[:, :, :, i : i + vae.tile_latent_min_height, j : j + vae.tile_latent_min_width]
            row.append(_decode_tile(vae, tile, progress))
        rows.append(row)
    result_rows = []
    for i, row in enumerate(rows):
        result_row = []
        for j, tile in enumerate(row):
            if i > 0:
                tile = vae.blend_v(rows[i - 1][j], tile, blend_height)
            if j > 0:
                tile = vae.blend_h(row[j - 1], tile, blend_width)
            result_row.append(tile[:, :, :, :row_limit_height, :row_limit_width])
        result_rows.append(torch.cat(result_row, dim=4))
    # Tile sizes whose overlap is not a whole number of latents leave extra rows/columns: keep the picture's size.
    scale = vae.tile_sample_min_height // vae.tile_latent_min_height
    return torch.cat(result_rows, dim=3)[..., : height * scale, : width * scale]


@contextlib.contextmanager
def _nothing():
    yield


@contextlib.contextmanager
def _single_frames_upsample_in_time(vae):
    """Within the block, time-compressing upsamplers double a single frame in time too (nearest, as for pairs)."""
    from diffusers.models.upsampling import CogVideoXUpsample3D

    patched = []
    for module in vae.decoder.modules():
        if isinstance(module, CogVideoXUpsample3D) and module.compress_time:
            module.forward = _time_and_space_upsample.__get__(module)
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward  # back to the class's forward


def _time_and_space_upsample(self, inputs: torch.Tensor) -> torch.Tensor:
    # Nearest ×2 in time, height and width for any frame count (diffusers' path for an even count), then the conv.
    inputs = F.interpolate(inputs, scale_factor=2.0)
    b, c, t, h, w = inputs.shape
    inputs = inputs.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    inputs = self.conv(inputs)
    return inputs.reshape(b, t, *inputs.shape[1:]).permute(0, 2, 1, 3, 4)
