"""Run the transforms tile by tile: bounded working memory, and parallel work without
thread-dependent arithmetic.

Each tile is processed with a halo wider than the transform's receptive field
and the halo is cropped away, so the tiled result equals the untiled one up to
float rounding: no seams, no blending. The grid depends on the image size
only (about ``tile`` positions a side, split evenly), never on the thread
count; each tile is computed single-threaded and the tiles are spread over a
pool of ``threads`` workers, so the pixels are the same at any thread count by
construction. Pixels enter and leave as uint8 arrays, so only the tiles in
flight exist in float.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np
from PIL import Image

from .model.geometry import HYPER_STRIDE, LATENT_STRIDE

TILE_LATENT = 16
"""Latent positions per tile side (256 px) at most: a side of n positions is split into
ceil(n / TILE_LATENT) equal parts (read at call time). Each worker holds one tile's
activations; at 16 (20 with the synthesis halo) a 4K decode peaks near 230 MB at 2 threads
and 330 MB at 4, against 350 and 590 MB for 24-latent tiles, for 17% more synthesis work."""
ANALYSIS_HALO = 2  # latents (32 px): g_a's four 5x5 stride-2 convs reach 2 + 4 + 8 + 16 = 30 px
SYNTHESIS_HALO = 2  # latents: g_s's four 3x3 sub-pixel convs reach 1 + 1/2 + 1/4 + 1/8 latents
HYPER_TILE = 64  # hyper-latent positions (256 latents)
HYPER_HALO = 4  # hyper-latents (16 latents) > the 7-latent reach of h_a

MAX_DEFAULT_THREADS = 4


def default_threads() -> int:
    """Tile workers when none are asked for: the CPUs this process may run on, at most
    MAX_DEFAULT_THREADS. Workers sleep when idle (no spinning), so a busy machine costs
    waiting time, not a collapse."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_THREADS))


Transform = Callable[[np.ndarray], np.ndarray]
"""A (1, C, h, w) float32 array in, a (1, C', h', w') float32 array out."""
Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called after each unit of work of a stage."""

T = TypeVar("T")
R = TypeVar("R")


def split(n: int, tile: int) -> list[tuple[int, int]]:
    """[start, stop) ranges covering 0..n in ceil(n / tile) nearly equal parts."""
    count = max(1, -(-n // tile))
    bounds = [i * n // count for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(count) if bounds[i] < bounds[i + 1]]


def tile_grid(h: int, w: int, tile: int, halo: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """(core, padded) windows (top, bottom, left, right) covering an h x w grid."""
    out = []
    for top, bottom in split(h, tile):
        for left, right in split(w, tile):
            padded = (max(top - halo, 0), min(bottom + halo, h), max(left - halo, 0), min(right + halo, w))
            out.append(((top, bottom, left, right), padded))
    return out


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """``map(fn, items)`` over a pool of ``threads`` workers, results in order, at most
    2 * threads items in flight (bounded memory)."""
    if threads <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sicc-tile") as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _to_float(pixels: np.ndarray) -> np.ndarray:
    return (pixels.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    pixels = np.rint(np.clip(x[0], 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    return pixels.transpose(1, 2, 0)


def tiled_downsample(fn: Transform, fetch: Callable[[int, int, int, int], np.ndarray], h: int, w: int,
                     tile: int, halo: int, threads: int = 1, progress: Progress | None = None,
                     stage: str = "analysis") -> np.ndarray:
    """An h x w output (C, h, w) of a downsampling transform, computed window by window.

    ``fetch(t0, t1, l0, l1)`` returns the input under output rows t0:t1 and
    columns l0:l1; each window carries ``halo`` output positions of context
    on every side, cropped away afterwards.
    """
    grid = tile_grid(h, w, tile, halo)
    out = None
    for index, ((c0, c1, d0, d1), (t0, t1, l0, l1), part) in enumerate(
            ordered_map(lambda cell: (*cell, fn(fetch(*cell[1]))), grid, threads)):
        if out is None:
            out = np.empty((part.shape[1], h, w), dtype=np.float32)
        out[:, c0:c1, d0:d1] = part[0, :, c0 - t0 : c1 - t0, d0 - l0 : d1 - l0]
        if progress:
            progress(stage, index + 1, len(grid))
    return out


def tiled_analysis(g_a: Transform, pixels: np.ndarray, tile: int | None = None, halo: int = ANALYSIS_HALO,
                   threads: int = 1, progress: Progress | None = None) -> np.ndarray:
    """g_a over an (H, W, 3) uint8 image whose sides are multiples of 16: y as (C, H/16, W/16)."""
    def fetch(t0: int, t1: int, l0: int, l1: int) -> np.ndarray:
        s = LATENT_STRIDE
        return _to_float(pixels[t0 * s : t1 * s, l0 * s : l1 * s])

    return tiled_downsample(g_a, fetch, pixels.shape[0] // LATENT_STRIDE, pixels.shape[1] // LATENT_STRIDE,
                            tile or TILE_LATENT, halo, threads, progress, "analysis")


def tiled_hyper_analysis(h_a: Transform, y: np.ndarray, tile: int = HYPER_TILE, halo: int = HYPER_HALO,
                         threads: int = 1) -> np.ndarray:
    """h_a over latents y (C, h, w) whose sides are multiples of 4: z as (C', h/4, w/4)."""
    def fetch(t0: int, t1: int, l0: int, l1: int) -> np.ndarray:
        s = HYPER_STRIDE
        return np.ascontiguousarray(y[None, :, t0 * s : t1 * s, l0 * s : l1 * s])

    return tiled_downsample(h_a, fetch, y.shape[1] // HYPER_STRIDE, y.shape[2] // HYPER_STRIDE, tile, halo, threads)


def _synthesis_tiles(g_s: Transform, y: np.ndarray, height: int, width: int, tile: int, halo: int,
                     threads: int, progress: Progress | None, offset: tuple[int, int] = (0, 0),
                     ) -> Iterator[tuple[int, int, np.ndarray]]:
    """(top, left, uint8 pixels) of each synthesized tile, cropped to the image: the ``height`` x
    ``width`` region of the canvas at ``offset`` (top, left; not (0, 0) for a centred image)."""
    _, h, w = y.shape
    s = LATENT_STRIDE
    top, left = offset
    grid = [cell for cell in tile_grid(h, w, tile or TILE_LATENT, halo)
            if cell[0][0] * s < top + height and cell[0][1] * s > top
            and cell[0][2] * s < left + width and cell[0][3] * s > left]

    def run(cell):
        (c0, c1, d0, d1), (t0, t1, l0, l1) = cell
        part = g_s(y[None, :, t0:t1, l0:l1].astype(np.float32))
        first_row, first_col = max(c0 * s, top), max(d0 * s, left)
        rows, cols = min(c1 * s, top + height) - first_row, min(d1 * s, left + width) - first_col
        r0, q0 = first_row - t0 * s, first_col - l0 * s
        return first_row - top, first_col - left, _to_uint8(part[:, :, r0 : r0 + rows, q0 : q0 + cols])

    for index, result in enumerate(ordered_map(run, grid, threads)):
        yield result
        if progress:
            progress("synthesis", index + 1, len(grid))


def tiled_synthesis(g_s: Transform, y: np.ndarray, height: int, width: int, tile: int | None = None,
                    halo: int = SYNTHESIS_HALO, threads: int = 1) -> np.ndarray:
    """g_s over latent tiles of y (C, h, w), straight into an (height, width, 3) uint8 array."""
    out = np.empty((height, width, 3), dtype=np.uint8)
    for top, left, pixels in _synthesis_tiles(g_s, y, height, width, tile, halo, threads, None):
        out[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    return out


def tiled_synthesis_image(g_s: Transform, y: np.ndarray, height: int, width: int, tile: int | None = None,
                          halo: int = SYNTHESIS_HALO, threads: int = 1,
                          progress: Progress | None = None, offset: tuple[int, int] = (0, 0)) -> Image.Image:
    """The same pixels pasted straight into a PIL image: no second full-size copy in numpy."""
    out = Image.new("RGB", (width, height))
    for top, left, pixels in _synthesis_tiles(g_s, y, height, width, tile, halo, threads, progress, offset):
        out.paste(Image.fromarray(pixels, "RGB"), (left, top))
    return out
