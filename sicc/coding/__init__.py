"""Entropy coding with constriction's range coder: symbols + model parameters <-> bytes.

Two models, both given as exact values so encoder and decoder build the same
integer probability tables:

- ``gaussian``: quantized Gaussians, one (mean, scale) per symbol, for the levels of y;
- ``categorical``: one integer frequency table per channel, for the hyper latent z.

This layer knows nothing about images or files: arrays in, bytes out.
"""

from .range_coding import (
    Y_BOUND,
    CodingError,
    decode_categorical,
    decode_gaussian,
    encode_categorical,
    encode_gaussian,
)

__all__ = [
    "Y_BOUND",
    "CodingError",
    "decode_categorical",
    "decode_gaussian",
    "encode_categorical",
    "encode_gaussian",
]
