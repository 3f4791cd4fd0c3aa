"""Run the transforms tile by tile so that memory stays bounded for any image size.

Each tile is processed with a halo wider than the transform's receptive field
and the halo is cropped away, so the tiled result equals the untiled one up to
float rounding: no seams, no blending.
"""

from __future__ import annotations

from typing import Callable

import torch

SCALE = 16  # pixels per latent position
TILE_LATENT = 64  # 1024 px tiles
ANALYSIS_HALO = 4  # latents (64 px) > the 61 px receptive field of g_a
SYNTHESIS_HALO = 4  # latents; g_s reaches about 2.5 latents


def _tile_starts(size: int, tile: int) -> range:
    return range(0, size, tile)


def tiled_synthesis(g_s: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor,
                    tile: int = TILE_LATENT, halo: int = SYNTHESIS_HALO) -> torch.Tensor:
    _, _, h, w = y.shape
    if h <= tile and w <= tile:
        return g_s(y)
    out = torch.empty((y.shape[0], 3, h * SCALE, w * SCALE), dtype=y.dtype)
    for top in _tile_starts(h, tile):
        for left in _tile_starts(w, tile):
            t0, l0 = max(top - halo, 0), max(left - halo, 0)
            t1, l1 = min(top + tile + halo, h), min(left + tile + halo, w)
            part = g_s(y[:, :, t0:t1, l0:l1])
            bottom, right = min(top + tile, h), min(left + tile, w)
            out[:, :, top * SCALE : bottom * SCALE, left * SCALE : right * SCALE] = part[
                :, :, (top - t0) * SCALE : (bottom - t0) * SCALE, (left - l0) * SCALE : (right - l0) * SCALE
            ]
    return out


def tiled_analysis(g_a: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   tile: int = TILE_LATENT, halo: int = ANALYSIS_HALO) -> torch.Tensor:
    _, _, ph, pw = x.shape
    h, w = ph // SCALE, pw // SCALE
    if h <= tile and w <= tile:
        return g_a(x)
    out = None
    for top in _tile_starts(h, tile):
        for left in _tile_starts(w, tile):
            t0, l0 = max(top - halo, 0), max(left - halo, 0)
            t1, l1 = min(top + tile + halo, h), min(left + tile + halo, w)
            part = g_a(x[:, :, t0 * SCALE : t1 * SCALE, l0 * SCALE : l1 * SCALE])
            if out is None:
                out = torch.empty((x.shape[0], part.shape[1], h, w), dtype=part.dtype)
            bottom, right = min(top + tile, h), min(left + tile, w)
            out[:, :, top:bottom, left:right] = part[:, :, top - t0 : bottom - t0, left - l0 : right - l0]
    return out
