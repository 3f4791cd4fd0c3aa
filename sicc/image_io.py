"""Reading input images into 8-bit RGB, with the conversions documented in the README.

Every problem becomes an :class:`~sicc.errors.InputImageError` with a message
a person can act on; conversions that lose information (alpha, 16-bit) are
reported as warnings.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputImageError, SiccWarning


@dataclass(frozen=True)
class RGBImage:
    pixels: np.ndarray  # (H, W, 3) uint8
    icc_profile: bytes | None = None
    exif: bytes | None = None


def open_image(source) -> Image.Image:
    """Open a path or file object with Pillow, turning its errors into InputImageError."""
    try:
        image = Image.open(source)
        image.load()
    except Image.DecompressionBombError as exc:
        raise InputImageError(f"image is too large: {exc}") from None
    except UnidentifiedImageError:
        raise InputImageError("not a readable image (unknown or damaged format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputImageError(f"cannot read image: {exc}") from None
    return image


def to_rgb(image: Image.Image) -> RGBImage:
    """Orientation applied; grayscale, palette, CMYK expanded; alpha composited over white;
    16-bit and float scaled to 8 bits."""
    icc = image.info.get("icc_profile")
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not stop the encode
        warnings.warn("EXIF orientation could not be read; image used as stored", SiccWarning, stacklevel=2)
    exif = image.getexif()
    exif_bytes = exif.tobytes() if len(exif) else None
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        gray = _gray_to_8bit(np.asarray(image, dtype=np.float64), mode)
        return RGBImage(np.repeat(gray[:, :, None], 3, axis=2), icc, exif_bytes)
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
        rgb = image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise InputImageError(f"cannot convert a {mode} image to RGB: {exc}") from None
    pixels = np.array(rgb, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays
    if pixels.ndim != 3 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise InputImageError("image has no pixels")
    return RGBImage(np.ascontiguousarray(pixels), icc, exif_bytes)


def _gray_to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """16-bit and 32-bit gray to 8 bits: 16-bit ranges scale by 255/65535, float in [0, 1] by 255."""
    peak = arr.max(initial=0)
    if mode.startswith("I;16") or (mode == "I" and peak > 255):
        scale = 255.0 / 65535.0
    elif mode == "F" and peak <= 1.0:
        scale = 255.0
    else:
        scale = 1.0
    warnings.warn(f"{mode} image reduced to 8-bit RGB", SiccWarning, stacklevel=3)
    return np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)


def load_rgb(source) -> RGBImage:
    """A path, file object, PIL image or (H, W, 3) uint8 array as :class:`RGBImage`."""
    if isinstance(source, RGBImage):
        return source
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[2] != 3:
            raise InputImageError("arrays must be (height, width, 3) uint8")
        return RGBImage(np.require(source, requirements=["C_CONTIGUOUS", "WRITEABLE"]))
    if isinstance(source, Image.Image):
        return to_rgb(source)
    with open_image(source) as image:
        return to_rgb(image)
