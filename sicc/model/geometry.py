"""The latent geometry of the SIC model, in one place.

The analysis transform maps an image to ``y`` at 1/16 of its size
(:data:`LATENT_STRIDE` pixels per latent position); the hyper analysis maps
``y`` to ``z`` at a further 1/4 (:data:`HYPER_STRIDE` latents per hyper
position). An image is therefore padded (edge-replicated) to a multiple of
:data:`PAD_MULTIPLE` = 64 pixels, and cropped back after synthesis.
"""

from __future__ import annotations

LATENT_STRIDE = 16
"""Pixels per latent position of y."""

HYPER_STRIDE = 4
"""Latent positions of y per position of the hyper latent z."""

PAD_MULTIPLE = LATENT_STRIDE * HYPER_STRIDE
"""Images are padded to a multiple of this many pixels (64)."""


CENTRED_MAX_SIDE = 64
"""Images with both sides at most this are *centred* by the encoder (header flag bit 1): placed in the
middle of a canvas one 64-pixel block larger on each axis, so that no image pixel touches the
canvas border, where the transforms see zeros beyond the edge. Measured with the shipped model
(``scripts/small_image_colour.py``): a 1x1 red comes back 56 levels off before, 9 after."""


def centres(height: int, width: int) -> bool:
    """Whether the encoder centres an image of this size (sicc's choice; a reader follows the flag)."""
    return height <= CENTRED_MAX_SIDE and width <= CENTRED_MAX_SIDE


def padded_size(height: int, width: int, centred: bool = False) -> tuple[int, int]:
    """The (height, width) of the canvas an image is padded to before analysis: each side rounded
    up to a multiple of 64, plus 64 when ``centred`` (formats/sic-v1.md, "Geometry")."""
    extra = PAD_MULTIPLE if centred else 0
    return (-(-height // PAD_MULTIPLE) * PAD_MULTIPLE + extra, -(-width // PAD_MULTIPLE) * PAD_MULTIPLE + extra)


def image_offset(height: int, width: int, centred: bool = False) -> tuple[int, int]:
    """(top, left) of the image on its canvas: (0, 0), or the middle (rounded down) when centred."""
    if not centred:
        return 0, 0
    ph, pw = padded_size(height, width, centred)
    return (ph - height) // 2, (pw - width) // 2


def latent_size(height: int, width: int, centred: bool = False) -> tuple[int, int]:
    """Rows and columns of y for an image of this size."""
    ph, pw = padded_size(height, width, centred)
    return ph // LATENT_STRIDE, pw // LATENT_STRIDE


def hyper_size(height: int, width: int, centred: bool = False) -> tuple[int, int]:
    """Rows and columns of z for an image of this size."""
    ph, pw = padded_size(height, width, centred)
    return ph // PAD_MULTIPLE, pw // PAD_MULTIPLE


def pad_image(pixels, centred: bool = False):
    """An (H, W, 3) uint8 array edge-padded to its canvas (the array itself when no padding is
    needed): on the right and bottom, or on every side when ``centred`` (each canvas pixel takes
    the value of the nearest image pixel). numpy is imported here: the container reads this
    module, and `sicc info`, `truncate` and `--version` need no numpy."""
    import numpy as np

    h, w = pixels.shape[:2]
    ph, pw = padded_size(h, w, centred)
    if (ph, pw) == (h, w):
        return pixels
    top, left = image_offset(h, w, centred)
    return np.pad(pixels, ((top, ph - h - top), (left, pw - w - left), (0, 0)), mode="edge")
