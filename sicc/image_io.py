"""Reading input images into 8-bit RGB, with the conversions documented in the README.

Every problem becomes an :class:`~sicc.errors.InputImageError` with a message
a person can act on; conversions that lose information (alpha, 16-bit) are
reported as warnings.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .container import FLAG_CENTRED, MAX_DIMENSION, check_pixel_budget
from .model.geometry import centres
from .errors import InputImageError, InputTooLargeError, SiccWarning


@dataclass(frozen=True)
class RGBImage:
    pixels: np.ndarray  # (H, W, 3) uint8
    icc_profile: bytes | None = None
    exif: bytes | None = None
    grayscale: bool = False  # a gray source (its three channels are equal): decoded back to gray


EXIF_ORIENTATION = 0x0112

_PILLOW_LIMIT_LOCK = threading.Lock()


@contextmanager
def pillow_bomb_check_lifted():
    """Pillow's own decompression-bomb limit (an error above 179 MP) would refuse images that
    sicc's limit allows; it is lifted only while sicc opens a file whose size sicc then checks
    itself, from the header, before any pixel is decoded."""
    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def check_size(width: int, height: int, max_pixels: int | None) -> None:
    """The format's limit per side, then the pixel budget (padded pixels, as on decode), for an
    image to encode."""
    if max(width, height) > MAX_DIMENSION:
        raise InputTooLargeError(f"image is too large: {width}x{height} exceeds the format's "
                                 f"{MAX_DIMENSION} px per side")
    check_pixel_budget(width, height, max_pixels, InputTooLargeError,
                       flags=FLAG_CENTRED if centres(height, width) else 0)  # the canvas the encoder will use


def open_image(source, max_pixels: int | None = None) -> Image.Image:
    """Open a path or file object with Pillow, turning its errors into InputImageError;
    ``max_pixels`` replaces Pillow's decompression-bomb limit."""
    try:
        with pillow_bomb_check_lifted():
            image = Image.open(source)
        if image.format == "SIC":  # the plugin would decode it, and encoding that re-encodes lossy pixels
            image.close()
            raise InputImageError("already a SIC file: sicc.truncate (`sicc truncate`) makes it smaller "
                                  "without re-encoding (or decode it first to re-encode the pixels)")
        check_size(*image.size, max_pixels)
        _warn_about_source(image)
        image.load()
        _warn_about_missing_jpeg_data(image)
    except Image.DecompressionBombError as exc:  # a later frame of a multi-frame file
        raise InputTooLargeError(f"image is too large: {exc}") from None
    except UnidentifiedImageError:
        raise InputImageError("not a readable image (unknown or damaged format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputImageError(f"cannot read image: {exc}") from None
    return image


GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
"""Pillow modes of gray images: encoded as three equal channels, recorded as grayscale in the file."""


def _warn_about_source(image: Image.Image) -> None:
    """What the encoder will not keep, said before the pixels are read: frames after the first,
    and the low 8 bits of 16-bit colour (16-bit gray is reported by the conversion itself)."""
    frames = getattr(image, "n_frames", 1)
    if getattr(image, "is_animated", False) and frames > 1:
        warnings.warn(f"animated {image.format} image: only the first of its {frames} frames is encoded",
                      SiccWarning, stacklevel=3)
    for tile in getattr(image, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if image.mode in ("RGB", "RGBA") and isinstance(rawmode, str) and ";16" in rawmode:
            warnings.warn(f"16-bit {image.mode} image reduced to 8 bits per channel", SiccWarning, stacklevel=3)
            break


JPEG_MISSING_GREY = 128
"""What libjpeg puts where a baseline JPEG's entropy-coded data ended early: every sample 128."""


def _warn_about_missing_jpeg_data(image: Image.Image) -> None:
    """A baseline JPEG whose data ends before its last rows (a cut file that still ends with an EOI
    marker, or damaged data) decodes without an error, libjpeg filling the missing blocks with flat
    grey (128) and its warning swallowed by Pillow. Whole bottom rows of exactly 128 in every
    channel, at least one 8-row block, are that signature: say so rather than encode a grey image
    silently."""
    if image.format != "JPEG" or image.info.get("progressive") or image.info.get("progression"):
        return
    pixels = np.asarray(image)
    if pixels.ndim < 2 or pixels.shape[0] < 8:
        return
    flat = (pixels == JPEG_MISSING_GREY).reshape(pixels.shape[0], -1).all(axis=1)
    grey_rows = int(np.argmin(flat[::-1])) if not flat.all() else pixels.shape[0]
    if grey_rows >= 8:
        warnings.warn(f"JPEG data ends early: its last {grey_rows} of {pixels.shape[0]} rows are missing "
                      "(decoded as flat grey; the file is cut or damaged)", SiccWarning, stacklevel=3)


def to_rgb(image: Image.Image) -> RGBImage:
    """Orientation applied; grayscale, palette, CMYK expanded; alpha composited over white;
    16-bit and float scaled to 8 bits."""
    icc = image.info.get("icc_profile")
    gray = image.mode in GRAY_MODES or (image.mode == "P" and _gray_palette(image))
    try:
        if image.getexif().get(EXIF_ORIENTATION, 1) != 1:  # transposing copies: only when needed
            image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not stop the encode
        warnings.warn("EXIF orientation could not be read; image used as stored", SiccWarning, stacklevel=2)
    exif_bytes = _exif_bytes(image)
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        gray_pixels = _gray_to_8bit(np.asarray(image, dtype=np.float64), mode)
        return RGBImage(np.repeat(gray_pixels[:, :, None], 3, axis=2), icc, exif_bytes, grayscale=True)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "RGBa"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min(initial=255) < 255:
            warnings.warn("alpha channel dropped: composited over white", SiccWarning, stacklevel=2)
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    if image.mode == "CMYK" and icc:
        icc = None  # a CMYK profile would be wrong for the RGB pixels
    try:
        rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy RGB too
    except (ValueError, OSError) as exc:
        raise InputImageError(f"cannot convert a {mode} image to RGB: {exc}") from None
    pixels = np.asarray(rgb, dtype=np.uint8)  # one copy (read-only; the transforms copy per tile)
    if pixels.ndim != 3 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise InputImageError("image has no pixels")
    return RGBImage(np.ascontiguousarray(pixels), icc, exif_bytes, grayscale=gray)


def _exif_bytes(image: Image.Image) -> bytes | None:
    """The image's EXIF block re-serialised, or None; a block Pillow cannot write back (a tag of the
    wrong type, such as an ASCII Orientation, or an offset near 2^32) is dropped with a warning."""
    try:
        exif = image.getexif()
        return exif.tobytes() if len(exif) else None
    except Exception as exc:  # noqa: BLE001 - Pillow raises struct.error, TypeError, ValueError... here
        warnings.warn(f"EXIF dropped: it is damaged ({one_line_reason(exc)})", SiccWarning, stacklevel=3)
        return None


def one_line_reason(exc: BaseException) -> str:
    """An exception as a short reason for a warning: its text, else its type's name."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _gray_palette(image: Image.Image) -> bool:
    """A palette image whose colours are all gray."""
    palette = image.getpalette() or []
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))


_GRAY_DEPTH = {"I;16": "16-bit", "I;16L": "16-bit", "I;16B": "16-bit", "I;16N": "16-bit", "I": "32-bit integer",
               "F": "32-bit float"}
"""How the warning names a gray mode's depth."""


def _gray_to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """16-bit and 32-bit gray to 8 bits: 16-bit ranges scale by 255/65535, float in [0, 1] by 255."""
    peak = arr.max(initial=0)
    if mode.startswith("I;16") or (mode == "I" and peak > 255):
        scale = 255.0 / 65535.0
    elif mode == "F" and peak <= 1.0:
        scale = 255.0
    else:
        scale = 1.0
    warnings.warn(f"{_GRAY_DEPTH.get(mode, mode)} gray image reduced to 8-bit gray", SiccWarning, stacklevel=3)
    return np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)


def load_rgb(source, max_pixels: int | None = None) -> RGBImage:
    """A path, file object, PIL image or (H, W, 3) uint8 array as :class:`RGBImage`,
    refused when it has more than ``max_pixels`` pixels (None: no limit)."""
    if isinstance(source, RGBImage):
        check_size(source.pixels.shape[1], source.pixels.shape[0], max_pixels)
        return source
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[2] != 3:
            raise InputImageError("arrays must be (height, width, 3) uint8")
        check_size(source.shape[1], source.shape[0], max_pixels)
        return RGBImage(np.require(source, requirements=["C_CONTIGUOUS", "WRITEABLE"]))
    if isinstance(source, Image.Image):
        check_size(*source.size, max_pixels)
        return to_rgb(source)
    with open_image(source, max_pixels) as image:
        return to_rgb(image)
