"""sicc's exception and warning family.

Everything that bad *data* can cause is a :class:`SiccError`, so a caller can
catch one class; the subclasses say what kind of problem a person has to fix.
"""

from __future__ import annotations


class SiccError(Exception):
    """Base class of every error caused by bad input to sicc."""


class NotSicError(SiccError):
    """The data is not a .sic file at all (wrong magic). ``head`` holds the first bytes of the data
    (at most ``container.NOT_SIC_HEAD``: nothing more is read once the signature fails), so a
    caller can say what the data is instead."""

    head: bytes = b""


class TruncatedError(SiccError):
    """The file ends before the first decodable point (header or hyperprior)."""


class CorruptError(SiccError):
    """A checksum failed or a field is inconsistent: the file is damaged or forged."""


class UnsupportedError(SiccError):
    """A valid file that this build cannot decode (newer version, other model)."""


class ImageTooLargeError(SiccError):
    """The image exceeds the configured pixel limit (decompression-bomb guard)."""


class InputImageError(SiccError):
    """An input image that cannot be read or represented."""


class ArgumentError(SiccError, ValueError):
    """A request that this file or image cannot satisfy: a level the file does not hold, a byte or
    bpp budget below its level 1, a contact sheet over the pixel budget. Also a ValueError (what
    these raised before), so ``except ValueError`` keeps working; the command exits 2."""


class BudgetError(ArgumentError):
    """A byte or bpp budget below the end of level 1. ``smallest`` is the size of the smallest file
    that fits (the prefix that ends with level 1), so a caller can keep level 1 anyway."""

    def __init__(self, message: str, smallest: int):
        super().__init__(message)
        self.smallest = smallest


class InputTooLargeError(InputImageError, ImageTooLargeError):
    """An image to encode exceeds the pixel limit or the format's size per side."""


def too_large_message(width: int, height: int, padded: tuple[int, int], limit: int) -> str:
    """One wording for the pixel budget, on encode and on decode. The budget counts the padded
    size (each side a multiple of 64), which is what the work and the memory follow."""
    pw, ph = padded
    size = f"{width}x{height}" if (pw, ph) == (width, height) else f"{width}x{height} (padded to {pw}x{ph})"
    return (f"image is too large: {size} = {pw * ph} pixels, over the limit of {limit} "
            "(raise it with --max-pixels or sicc.MAX_IMAGE_PIXELS)")


class SiccWarning(UserWarning):
    """A problem that sicc recovered from, e.g. decoding the complete levels of a cut file."""


class TruncatedFileWarning(SiccWarning):
    """The file was cut inside a level; the complete levels before the cut were decoded."""


class CorruptLevelWarning(SiccWarning):
    """A level failed its checksum; the good levels before it were decoded."""


class WeightsError(SiccError):
    """A model weights file that is damaged, forged or not a sicc weights file."""


class NoLevelWarning(SiccWarning):
    """No level was decoded: every level was sampled from the hyperprior alone (noise-like)."""
