"""Synonymous behaviour: how different the samples of one file are, and how stable re-coding is.

- diversity: mean pairwise LPIPS-alex between samples of the same level
  (seeds 0..n-1, spread as in the sampled decode); 0 means every sample is identical.
- idempotence: decode -> re-encode -> decode for several generations at a few
  levels; the drift of PSNR / DISTS (all four metrics are kept) against the original shows whether the
  decoder's outputs are fixed points of the encoder.
"""

from __future__ import annotations

from itertools import combinations

from PIL import Image

from .images import BenchImage
from .metrics import Metrics, Reference
from .progressive import DecodeMode, ImageResult, truncate


def diversity(codec, metrics: Metrics, img: BenchImage, result: ImageResult, mode: DecodeMode,
              samples: int = 4) -> list[dict]:
    """Mean pairwise LPIPS between ``samples`` decodes (seeds 0..samples-1) at every level."""
    rows = []
    for level, prefix in result.prefixes.items():
        draws = []
        for seed in range(samples):
            cached = result.decoded.get(mode.name, {}).get(level) if seed == mode.seed else None
            if cached is None:
                cached = codec.decode(prefix, samples=1, seed=seed, spread=mode.spread)[0]
            draws.append(cached)
        pairs = [metrics.lpips_images(a, b) for a, b in combinations(draws, 2)]
        rows.append({"image": img.name, "level": level, "mean_pairwise_lpips": sum(pairs) / len(pairs)})
    return rows


def idempotence(codec, metrics: Metrics, img: BenchImage, ref: Reference, result: ImageResult,
                mode: DecodeMode, levels: list[int], generations: int) -> list[dict]:
    """Generation 0 is the first decode; generation g re-encodes generation g-1 and decodes level L.

    Sampled mode uses seed ``mode.seed + g`` at generation g (a fresh draw each time).
    """
    rows = []
    for level in levels:
        if level not in result.prefixes:
            continue
        current: Image.Image = result.decoded[mode.name][level]
        size = len(result.prefixes[level])
        for generation in range(generations + 1):
            if generation:
                data = truncate(codec.encode(current), level)
                size = len(data)
                current = codec.decode(data, samples=1, seed=mode.seed + generation, spread=mode.spread)[0]
            rows.append({
                "image": img.name, "mode": mode.name, "level": level, "generation": generation,
                "bpp": size * 8 / img.pixels, **metrics.compare(ref, current),
            })
    return rows
