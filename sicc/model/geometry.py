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


def padded_size(height: int, width: int) -> tuple[int, int]:
    """The (height, width) an image is padded to before analysis."""
    return -(-height // PAD_MULTIPLE) * PAD_MULTIPLE, -(-width // PAD_MULTIPLE) * PAD_MULTIPLE


def latent_size(height: int, width: int) -> tuple[int, int]:
    """Rows and columns of y for an image of this size."""
    ph, pw = padded_size(height, width)
    return ph // LATENT_STRIDE, pw // LATENT_STRIDE


def hyper_size(height: int, width: int) -> tuple[int, int]:
    """Rows and columns of z for an image of this size."""
    ph, pw = padded_size(height, width)
    return ph // PAD_MULTIPLE, pw // PAD_MULTIPLE


def pad_image(pixels):
    """An (H, W, 3) uint8 array edge-padded to the padded size (the array itself when no padding
    is needed). numpy is imported here: the container reads this module, and `sicc info`,
    `truncate` and `--version` need no numpy."""
    import numpy as np

    h, w = pixels.shape[:2]
    ph, pw = padded_size(h, w)
    if (ph, pw) == (h, w):
        return pixels
    return np.pad(pixels, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
