"""Colour error of small images through the shipped model, with and without centring (issue #47).

    python scripts/small_image_colour.py            # a Markdown table for the README

Images of at most 64x64 are centred on a canvas one 64-pixel block larger each way (header flag
bit 1, formats/sic-v1.md); "uncentred" encodes them as before, padded on the right and bottom
only. Each row: the largest error of any pixel and channel, the error of the top-left corner
pixel (the one the old padding left at the canvas border), and of the mean colour, for the
full-rate file decoded deterministically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import sicc
from sicc import codec as codec_module

REPO = Path(__file__).resolve().parents[1]


def cases() -> dict[str, np.ndarray]:
    photo = np.asarray(Image.open(REPO / "examples" / "kodim23.png").convert("RGB"))
    red = (200, 30, 30)
    return {
        "1x1 (200,30,30)": np.full((1, 1, 3), red, np.uint8),
        "8x8 flat (200,30,30)": np.full((8, 8, 3), red, np.uint8),
        "8x8 crop of kodim23": photo[100:108, 150:158].copy(),
        "32x32 crop of kodim23": photo[100:132, 150:182].copy(),
        "64x64 flat (200,30,30)": np.full((64, 64, 3), red, np.uint8),
        "64x64 crop of kodim23": photo[100:164, 150:214].copy(),
    }


def errors(pixels: np.ndarray, centred: bool) -> tuple[int, int, float]:
    original = codec_module.centres
    codec_module.centres = (lambda h, w: original(h, w)) if centred else (lambda h, w: False)
    try:
        decoded = np.asarray(sicc.decode(sicc.encode(pixels), spread=0.0)[0].convert("RGB")).astype(int)
    finally:
        codec_module.centres = original
    diff = np.abs(decoded - pixels.astype(int))
    mean = np.abs(decoded.reshape(-1, 3).mean(0) - pixels.reshape(-1, 3).mean(0)).max()
    return int(diff.max()), int(diff[0, 0].max()), float(mean)


def main() -> None:
    print("| image | largest error: uncentred / centred | top-left pixel | mean colour |")
    print("|---|---|---|---|")
    for name, pixels in cases().items():
        (a_max, a_corner, a_mean), (b_max, b_corner, b_mean) = errors(pixels, False), errors(pixels, True)
        print(f"| {name} | {a_max} / {b_max} | {a_corner} / {b_corner} | {a_mean:.1f} / {b_mean:.1f} |")


if __name__ == "__main__":
    main()
