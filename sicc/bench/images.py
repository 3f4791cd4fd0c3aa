"""The evaluation images: Kodak (evaluation only, never tuned on) and a synthetic 4K frame."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..train.perceptual import metric_weights_dir


def default_kodak_dir() -> Path:
    """$SICC_KODAK, else shared/data/kodak next to the metric weights (same
    SICC_METRIC_WEIGHTS-relative layout)."""
    if os.environ.get("SICC_KODAK"):
        return Path(os.environ["SICC_KODAK"])
    return metric_weights_dir().parent / "kodak"


@dataclass
class BenchImage:
    name: str
    image: Image.Image

    @property
    def pixels(self) -> int:
        return self.image.width * self.image.height


def load_images(directory: Path, count: int | None = None, crop: int | None = None) -> list[BenchImage]:
    """The first ``count`` PNGs of ``directory`` (sorted), RGB, optionally centre-cropped to crop x crop."""
    files = sorted(Path(directory).glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no PNG images in {directory}")
    out = []
    for path in files[:count]:
        img = Image.open(path).convert("RGB")
        if crop:
            img = center_crop(img, crop)
        out.append(BenchImage(path.stem, img))
    return out


def center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    size = min(size, w, h)
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def large_frame(sources: list[BenchImage], width: int, height: int) -> Image.Image:
    """A width x height photo-like frame for memory tests: Kodak tiles, Lanczos-resized.

    Tiling keeps real image statistics (an upscaled single image would be
    unrealistically smooth and a flat image unrealistically cheap).
    """
    frame = Image.new("RGB", (width, height))
    tile_w, tile_h = max(1, width // 4), max(1, height // 3)
    i = 0
    for top in range(0, height, tile_h):
        for left in range(0, width, tile_w):
            src = sources[i % len(sources)].image
            frame.paste(src.resize((tile_w, tile_h), Image.LANCZOS), (left, top))
            i += 1
    return frame
