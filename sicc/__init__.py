"""sicc: progressive Synonymous Image Compression.

    import sicc
    data = sicc.encode("photo.png")                   # all 16 levels (or bpp=0.2, max_bytes=..., levels=4)
    small = sicc.truncate(data, level=4)              # a byte prefix: levels 1..4
    images = sicc.decode(small, samples=4, seed=7)    # four synonymous reconstructions
    sicc.info(data).levels[3].cumulative_bpp

After ``import sicc``, Pillow opens ``.sic`` files: ``Image.open("x.sic")``.
"""

from __future__ import annotations

from PIL import Image

from typing import TYPE_CHECKING

from .errors import (
    CorruptError,
    CorruptLevelWarning,
    ImageTooLargeError,
    InputImageError,
    InputTooLargeError,
    NoLevelWarning,
    NotSicError,
    SiccError,
    SiccWarning,
    TruncatedError,
    TruncatedFileWarning,
    UnsupportedError,
)

from .stream import FileInfo, LevelInfo, file_info, truncate

if TYPE_CHECKING:
    from .codec import Codec

from .model.config import DEFAULT_SPREAD

__version__ = "0.1.0"

MAX_IMAGE_PIXELS: int | None = 1 << 28
"""Encoding and decoding refuse images with more pixels than this (16384 x 16384); None disables
the guard. Files sicc opens are checked from their header, before any pixel is decoded; this limit
replaces Pillow's own ``Image.MAX_IMAGE_PIXELS`` for them."""


def encode(image, levels: int | None = None, keep_metadata: bool = True, max_pixels: int | None = None,
           bpp: float | None = None, max_bytes: int | None = None) -> bytes:
    """Encode a path, PIL image or (H, W, 3) uint8 array with the shipped model: every level, the
    first ``levels``, or the most levels that fit ``bpp`` bits per pixel or ``max_bytes`` bytes
    (the rule of :func:`truncate`: a budget below level 1 is refused with the size that fits)."""
    from .codec import Codec

    return Codec.default().encode(image, levels=levels, keep_metadata=keep_metadata, max_pixels=max_pixels,
                                  bpp=bpp, max_bytes=max_bytes)


def decode(data: bytes, samples: int = 1, seed: int = 0, spread: float = DEFAULT_SPREAD,
           level: int | None = None, strict: bool = False) -> list[Image.Image]:
    """Decode ``samples`` synonymous reconstructions (spread=0: the deterministic mean decode)."""
    from .codec import Codec

    return Codec.default().decode(data, samples=samples, seed=seed, spread=spread, level=level, strict=strict)


def montage(data: bytes, levels: list[int] | None = None, samples: int = 3, seed: int = 0,
            spread: float = DEFAULT_SPREAD, original=None, tile_width: int | None = None) -> Image.Image:
    """A labelled contact sheet: a row per level (default 1, 2, 4, 8, ... and the last), a
    column per sample, the original (a PIL image) first if given."""
    from .codec import Codec
    from .montage import contact_sheet

    return contact_sheet(Codec.default(), data, levels=levels, samples=samples, seed=seed, spread=spread,
                         original=original, tile_width=tile_width)


def info(data: bytes) -> FileInfo:
    """Size, model id and per-level bytes and bpp of a SIC file."""
    return file_info(data)


def __getattr__(name: str):
    # The codec pulls in onnxruntime; `sicc info`, `truncate` and `--help` never need it.
    if name == "Codec":
        from .codec import Codec

        return Codec
    raise AttributeError(f"module 'sicc' has no attribute {name!r}")


def _register_pillow_plugin() -> None:
    from . import pillow_plugin

    pillow_plugin.register()


_register_pillow_plugin()

__all__ = [
    "MAX_IMAGE_PIXELS", "Codec", "CorruptError", "CorruptLevelWarning", "FileInfo", "ImageTooLargeError", "InputTooLargeError",
    "InputImageError", "LevelInfo", "NoLevelWarning", "NotSicError", "SiccError", "SiccWarning", "TruncatedError",
    "TruncatedFileWarning", "UnsupportedError", "decode", "encode", "info", "montage", "truncate",
]
