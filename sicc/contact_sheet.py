"""A contact sheet of a SIC file: one row per level, one column per sample, labelled with the
level, its bpp and the sample's seed, beside the original if given, so a person can see what
each level and each synonymous sample looks like (``sicc montage``)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from .model.config import DEFAULT_SPREAD
from .stream import file_info

LABEL_HEIGHT = 18
GAP = 4
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


@dataclass(frozen=True)
class Tile:
    image: Image.Image
    label: str


def contact_sheet(codec, data: bytes, levels: list[int] | None = None, samples: int = 3, seed: int = 0,
                  spread: float = DEFAULT_SPREAD, original: Image.Image | None = None,
                  tile_width: int | None = None, threads: int | None = None) -> Image.Image:
    """The sheet as an RGB image. ``levels`` default to 1, 2, 4, 8 ... and the file's last level;
    levels the file does not hold are refused (ValueError). A level that holds every level of the
    model has nothing to sample, so its row shows one tile. Tiles are scaled to ``tile_width``."""
    info = file_info(data)
    available = len(info.levels)
    if available == 0:
        raise ValueError("the file holds no level: nothing to show")
    if levels is None:
        levels = sorted({*(2**k for k in range(8) if 2**k <= available), available})
    bad = [lv for lv in levels if not 1 <= lv <= available]
    if bad:
        raise ValueError(f"level {bad[0]} is not in the file (it holds levels 1..{available})")
    if samples < 1:
        raise ValueError("samples must be at least 1")
    rows: list[list[Tile]] = []
    for level in levels:
        complete = level == info.model_levels or spread == 0
        count = 1 if complete else samples
        images = codec.decode(data, samples=count, seed=seed, spread=spread, level=level, threads=threads)
        bpp = info.levels[level - 1].cumulative_bpp
        row = []
        for k, image in enumerate(images):
            what = "complete" if level == info.model_levels else (
                "mean decode" if spread == 0 else f"seed {seed} sample {k}")
            row.append(Tile(image.convert("RGB"), f"level {level}  {bpp:.3f} bpp  {what}"))
        rows.append(row)
    width = tile_width or info.width
    height = max(1, round(info.height * width / info.width))
    columns = max(len(row) for row in rows) + (original is not None)
    sheet = Image.new("RGB", (columns * (width + GAP) + GAP, len(rows) * (height + LABEL_HEIGHT + GAP) + GAP),
                      BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font()
    for r, row in enumerate(rows):
        tiles = ([Tile(original.convert("RGB"), "original")] if original is not None and r == 0 else
                 [None] if original is not None else []) + row
        for c, tile in enumerate(tiles):
            if tile is None:
                continue
            x, y = GAP + c * (width + GAP), GAP + r * (height + LABEL_HEIGHT + GAP)
            sheet.paste(tile.image.resize((width, height), Image.Resampling.LANCZOS)
                        if tile.image.size != (width, height) else tile.image, (x, y))
            draw.text((x + 2, y + height + 2), _fit(draw, tile.label, font, width - 4), fill=INK, font=font)
    return sheet


def _font():
    """Pillow's own default font (no download, no system font needed)."""
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1: the bitmap font, one size
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
