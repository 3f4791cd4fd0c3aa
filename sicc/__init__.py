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

from typing import TYPE_CHECKING, Iterator

from .errors import (
    ArgumentError,
    BudgetError,
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

from .model.config import DEFAULT_SPREAD, SAMPLES_SPREAD, SINGLE_SPREAD  # noqa: F401 - public

__version__ = "0.1.0"

MAX_IMAGE_PIXELS: int | None = 1 << 26
"""The pixel budget of encode and decode: images whose PADDED size (each side rounded up to a
multiple of 64, what the codec works at) has more pixels than this are refused; None disables it.
The default, 67108864 (8192 x 8192), admits 8K video frames and 48-50 MP photos, and sits below
Pillow's own warning level (89 MP) because a sicc pixel costs far more to decode (the README's
peak-memory table). A 1 x 1048576 image counts as 64 x 1048576. Files sicc opens are checked from
their header, before any pixel is decoded or the rest of the file is read; this budget replaces
Pillow's ``Image.MAX_IMAGE_PIXELS`` for the images sicc encodes. Raise it per call with
``max_pixels=`` or on the command line with ``--max-pixels``."""


def encode(image, levels: int | None = None, keep_metadata: bool = True, max_pixels: int | None = None,
           bpp: float | None = None, max_bytes: int | None = None, threads: int | None = None,
           progress=None, at_least_one: bool = False) -> bytes:
    """Encode a path, PIL image or (H, W, 3) uint8 array with the shipped model: every level, the
    first ``levels``, or the most levels that fit ``bpp`` bits per pixel or ``max_bytes`` bytes
    (the rule of :func:`truncate`: a budget below level 1 is refused with the size that fits,
    :class:`BudgetError`; with ``at_least_one``, level 1 is kept and a warning names its size).
    A SIC file given as a path is refused (:class:`InputImageError`): :func:`truncate` cuts it.
    ``threads``: tiles transformed side by side (never changes the result); ``progress(stage,
    done, total)`` is called after each tile and level."""
    from .codec import Codec

    return Codec.default().encode(image, levels=levels, keep_metadata=keep_metadata, max_pixels=max_pixels,
                                  bpp=bpp, max_bytes=max_bytes, threads=threads, progress=progress,
                                  at_least_one=at_least_one)


def decode(source, samples: int = 1, seed: int = 0, spread: float | None = None,
           level: int | None = None, strict: bool = False, max_pixels: int | None = None,
           threads: int | None = None, progress=None) -> list[Image.Image]:
    """Decode ``samples`` synonymous reconstructions (spread=0: the deterministic mean decode; by
    default 0 for one decode, the best-scoring one, and 2 for several samples: ``SINGLE_SPREAD``,
    ``SAMPLES_SPREAD``).

    ``source`` is the file's bytes, a path or a binary file object; a file is read in bounded
    pieces (``container.read``). ``max_pixels`` overrides ``sicc.MAX_IMAGE_PIXELS``.
    ``threads``: tiles synthesized side by side (the pixels are the same at any count);
    ``progress(stage, done, total)`` is called after each level and tile."""
    from .codec import Codec

    return Codec.default().decode(source, samples=samples, seed=seed, spread=spread, level=level, strict=strict,
                                  max_pixels=max_pixels, threads=threads, progress=progress)


def decode_iter(source, samples: int = 1, seed: int = 0, spread: float | None = None,
                level: int | None = None, strict: bool = False, max_pixels: int | None = None,
                threads: int | None = None, progress=None) -> Iterator[Image.Image]:
    """The samples of :func:`decode`, one at a time: each is synthesized when the iterator is
    advanced, so writing each before taking the next holds one image, not ``samples`` (what
    ``sicc decode --samples N`` does). The file is read and checked, and its levels decoded,
    before this returns: errors and warnings about the file come from this call."""
    from .codec import Codec

    return Codec.default().decode_iter(source, samples=samples, seed=seed, spread=spread, level=level,
                                       strict=strict, max_pixels=max_pixels, threads=threads, progress=progress)


def montage(data: bytes, levels: list[int] | None = None, samples: int = 3, seed: int = 0,
            spread: float | None = None, original=None, tile_width: int | None = None,
            max_pixels: int | None = None) -> Image.Image:
    """A labelled contact sheet: a row per level (default 1, 2, 4, 8, ... and the last), a
    column per sample, the original (a PIL image) first if given. A sheet over the pixel budget
    (``max_pixels``, default ``MAX_IMAGE_PIXELS``) is refused before any decoding
    (:class:`ArgumentError`); the pictures are decoded one at a time."""
    from .codec import Codec
    from .contact_sheet import contact_sheet

    return contact_sheet(Codec.default(), data, levels=levels, samples=samples, seed=seed, spread=spread,
                         original=original, tile_width=tile_width, max_pixels=max_pixels)


def info(source, max_pixels: int | None = None) -> FileInfo:
    """Size, model id and per-level bytes and bpp of a SIC file (bytes, a path or a binary file
    object, read in bounded pieces). Checks the structure that needs no model; only a decode can
    tell a range-coded payload that does not decode to exactly its symbols. A file over the pixel
    budget (``max_pixels``, default ``sicc.MAX_IMAGE_PIXELS``) is refused from its header."""
    return file_info(source, max_pixels)


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
    "MAX_IMAGE_PIXELS", "ArgumentError", "BudgetError", "Codec", "CorruptError", "CorruptLevelWarning", "FileInfo", "ImageTooLargeError", "InputTooLargeError",
    "InputImageError", "LevelInfo", "NoLevelWarning", "NotSicError", "SiccError", "SiccWarning", "TruncatedError",
    "TruncatedFileWarning", "UnsupportedError", "decode", "decode_iter", "encode", "info", "montage", "truncate",
]
