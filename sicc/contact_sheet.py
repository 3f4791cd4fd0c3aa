"""A contact sheet of a SIC file: one row per level, one column per sample, labelled with the
level, its bpp and the sample's seed, beside the original if given, so a person can see what
each level and each synonymous sample looks like (``sicc montage``)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from . import container
from .errors import ArgumentError
from .model.config import default_spread
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
                  spread: float | None = None, original: Image.Image | None = None,
                  tile_width: int | None = None, threads: int | None = None,
                  max_pixels: int | None = None) -> Image.Image:
    """The sheet as an RGB image (``codec``: a Codec, or a function that loads one). ``levels`` default to 1, 2, 4, 8 ... and the file's last level;
    levels the file does not hold are refused (:class:`ArgumentError`). A level that holds every
    level of the model has nothing to sample, so its row shows one tile. Tiles are scaled to
    ``tile_width``.

    Memory is bounded: the sheet's size is known from the header, and a sheet over the pixel
    budget (``max_pixels``, default ``sicc.MAX_IMAGE_PIXELS``) is refused before anything is
    decoded; the pictures are then decoded one at a time and pasted, so the sheet and one picture
    are held, never every picture."""
    info = file_info(data)
    available = len(info.levels)
    if available == 0:
        raise ArgumentError("the file holds no level: nothing to show")
    if levels is None:
        levels = sorted({*(2**k for k in range(8) if 2**k <= available), available})
    bad = [lv for lv in levels if not 1 <= lv <= available]
    if bad:
        raise ArgumentError(f"level {bad[0]} is not in the file (it holds levels 1..{available})")
    if samples < 1:
        raise ValueError("samples must be at least 1")
    spread = default_spread(spread, samples)
    counts = [1 if level == info.model_levels or spread == 0 else samples for level in levels]
    width = tile_width or info.width
    height = max(1, round(info.height * width / info.width))
    columns = max(counts) + (original is not None)
    size = (columns * (width + GAP) + GAP, len(levels) * (height + LABEL_HEIGHT + GAP) + GAP)
    limit = container.pixel_limit(max_pixels)
    if limit is not None and size[0] * size[1] > limit:
        raise ArgumentError(f"the contact sheet would be {size[0]}x{size[1]} = {size[0] * size[1]} pixels, over the "
                            f"pixel budget of {limit}: choose a smaller --tile-width, fewer --levels or --samples, "
                            "or raise --max-pixels")
    codec = codec() if callable(codec) else codec  # a loader: the model loads once the sheet is known to fit
    sheet = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font()

    def place(tile: Tile, row: int, column: int) -> None:
        x, y = GAP + column * (width + GAP), GAP + row * (height + LABEL_HEIGHT + GAP)
        image = tile.image.convert("RGB")
        sheet.paste(image.resize((width, height), Image.Resampling.LANCZOS) if image.size != (width, height)
                    else image, (x, y))
        draw.text((x + 2, y + height + 2), _fit(draw, tile.label, font, width - 4), fill=INK, font=font)

    first = 0
    if original is not None:
        place(Tile(original, "original"), 0, 0)
        first = 1
    for r, (level, count) in enumerate(zip(levels, counts)):
        bpp = info.levels[level - 1].cumulative_bpp
        images = codec.decode_iter(data, samples=count, seed=seed, spread=spread, level=level, threads=threads,
                                   max_pixels=max_pixels)
        k = 0
        for image in images:  # (not enumerate(): its cached tuple would hold the last picture during the next)
            what = "complete" if level == info.model_levels else (
                "mean decode" if spread == 0 else f"seed {seed} sample {k}")
            place(Tile(image, f"level {level}  {bpp:.3f} bpp  {what}"), r, first + k)
            del image
            k += 1
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
