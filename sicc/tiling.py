"""Run the transforms tile by tile so that their working memory stays bounded.

Each tile is processed with a halo wider than the transform's receptive field
and the halo is cropped away, so the tiled result equals the untiled one up to
float rounding: no seams, no blending. Pixels enter and leave as uint8 arrays,
so only one tile at a time exists in float.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image

SCALE = 16  # pixels per latent position
TILE_LATENT = 64  # 1024 px tiles
ANALYSIS_HALO = 4  # latents (64 px) > the 61 px receptive field of g_a
SYNTHESIS_HALO = 4  # latents; g_s reaches about 2.5 latents
HYPER_SCALE = 4  # latent positions per hyper-latent position
HYPER_TILE = 64  # hyper-latent positions (256 latents)
HYPER_HALO = 4  # hyper-latents (16 latents) > the 7-latent reach of h_a


def _tiles(h: int, w: int, tile: int, halo: int):
    """(core, padded) latent windows covering an h x w latent grid."""
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            core = (top, min(top + tile, h), left, min(left + tile, w))
            padded = (max(top - halo, 0), min(top + tile + halo, h), max(left - halo, 0), min(left + tile + halo, w))
            yield core, padded


def _to_float(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.require(pixels, requirements=["C", "W"])).permute(2, 0, 1)[None].float().div_(255.0)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return x[0].clamp(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()


def tiled_downsample(fn: Callable[[torch.Tensor], torch.Tensor], fetch: Callable[[int, int, int, int], torch.Tensor],
                     h: int, w: int, tile: int, halo: int) -> torch.Tensor:
    """An h x w output of a downsampling transform, computed window by window.

    ``fetch(t0, t1, l0, l1)`` returns the input under output rows t0:t1 and
    columns l0:l1; each window carries ``halo`` output positions of context
    on every side, cropped away afterwards.
    """
    out = None
    for (c0, c1, d0, d1), (t0, t1, l0, l1) in _tiles(h, w, tile, halo):
        part = fn(fetch(t0, t1, l0, l1))
        if out is None:
            out = torch.empty((1, part.shape[1], h, w), dtype=part.dtype)
        out[:, :, c0:c1, d0:d1] = part[:, :, c0 - t0 : c1 - t0, d0 - l0 : d1 - l0]
    return out


def tiled_analysis(g_a: Callable[[torch.Tensor], torch.Tensor], pixels: np.ndarray,
                   tile: int = TILE_LATENT, halo: int = ANALYSIS_HALO) -> torch.Tensor:
    """g_a over an (H, W, 3) uint8 image whose sides are multiples of 16."""
    def fetch(t0: int, t1: int, l0: int, l1: int) -> torch.Tensor:
        return _to_float(pixels[t0 * SCALE : t1 * SCALE, l0 * SCALE : l1 * SCALE])

    return tiled_downsample(g_a, fetch, pixels.shape[0] // SCALE, pixels.shape[1] // SCALE, tile, halo)


def tiled_hyper_analysis(h_a: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor,
                         tile: int = HYPER_TILE, halo: int = HYPER_HALO) -> torch.Tensor:
    """h_a over latents y (1, C, h, w) whose sides are multiples of 4."""
    def fetch(t0: int, t1: int, l0: int, l1: int) -> torch.Tensor:
        return y[:, :, t0 * HYPER_SCALE : t1 * HYPER_SCALE, l0 * HYPER_SCALE : l1 * HYPER_SCALE]

    return tiled_downsample(h_a, fetch, y.shape[2] // HYPER_SCALE, y.shape[3] // HYPER_SCALE, tile, halo)


def _synthesis_tiles(g_s: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, height: int, width: int,
                     tile: int, halo: int):
    """(top, left, uint8 pixels) of each synthesized tile, cropped to the image."""
    _, _, h, w = y.shape
    for (c0, c1, d0, d1), (t0, t1, l0, l1) in _tiles(h, w, tile, halo):
        if c0 * SCALE >= height or d0 * SCALE >= width:
            continue  # a tile of padding only
        part = g_s(y[:, :, t0:t1, l0:l1].float())
        rows = min(c1 * SCALE, height) - c0 * SCALE
        cols = min(d1 * SCALE, width) - d0 * SCALE
        r0, q0 = (c0 - t0) * SCALE, (d0 - l0) * SCALE
        yield c0 * SCALE, d0 * SCALE, _to_uint8(part[:, :, r0 : r0 + rows, q0 : q0 + cols])


def tiled_synthesis(g_s: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, height: int, width: int,
                    tile: int = TILE_LATENT, halo: int = SYNTHESIS_HALO) -> np.ndarray:
    """g_s over latent tiles, straight into an (height, width, 3) uint8 array."""
    out = np.empty((height, width, 3), dtype=np.uint8)
    for top, left, pixels in _synthesis_tiles(g_s, y, height, width, tile, halo):
        out[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    return out


def tiled_synthesis_image(g_s: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, height: int, width: int,
                          tile: int = TILE_LATENT, halo: int = SYNTHESIS_HALO) -> Image.Image:
    """The same pixels pasted straight into a PIL image: no second full-size copy in numpy."""
    out = Image.new("RGB", (width, height))
    for top, left, pixels in _synthesis_tiles(g_s, y, height, width, tile, halo):
        out.paste(Image.fromarray(pixels, "RGB"), (left, top))
    return out
