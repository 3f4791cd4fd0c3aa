"""Thin, explicit wrappers over constriction's RangeEncoder/RangeDecoder.

Decoding checks that the data is exactly what the encoder writes for the decoded symbols, so a
payload that is too short (the decoder would run past its end) or too long is corrupt, never a
latent made up from padding."""

from __future__ import annotations

import constriction
import numpy as np

Y_BOUND = 255
"""Latent symbols of y lie in [-Y_BOUND, Y_BOUND]; the encoder clamps to this range."""

_GAUSSIAN = constriction.stream.model.QuantizedGaussian(-Y_BOUND, Y_BOUND)


class CodingError(ValueError):
    """The compressed bytes cannot be decoded with the given model."""


def _to_bytes(words: np.ndarray) -> bytes:
    return np.asarray(words, dtype="<u4").tobytes()


def _to_words(data: bytes) -> np.ndarray:
    if len(data) % 4:
        raise CodingError(f"coded data of {len(data)} bytes is not a whole number of 32-bit words")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def encode_gaussian(symbols: np.ndarray, means: np.ndarray, scales: np.ndarray) -> bytes:
    """Code integer ``symbols`` under N(mean, scale) quantized to unit bins, one pair per symbol."""
    encoder = constriction.stream.queue.RangeEncoder()
    flat = np.ascontiguousarray(symbols, dtype=np.int32).ravel()
    if flat.size:
        if np.abs(flat).max() > Y_BOUND:
            raise ValueError(f"symbols must lie in [-{Y_BOUND}, {Y_BOUND}]")
        encoder.encode(flat, _GAUSSIAN, _params(means), _params(scales))
    return _to_bytes(encoder.get_compressed())


def decode_gaussian(data: bytes, means: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_gaussian`; the result has the shape of ``means``. Data that is
    not exactly the encoding of the symbols it decodes to is refused (:func:`_check_exact`)."""
    decoder = constriction.stream.queue.RangeDecoder(_to_words(data))
    m = _params(means)
    if not m.size:
        out = np.zeros(np.shape(means), dtype=np.int32)
    else:
        try:
            out = np.asarray(decoder.decode(_GAUSSIAN, m, _params(scales)), dtype=np.int32)
        except (ValueError, RuntimeError, AssertionError) as exc:  # constriction reports bad data so
            raise CodingError(f"range decoder failed: {exc}") from None
    _check_exact(data, encode_gaussian(out, means, scales))
    return out.reshape(np.shape(means))


def _check_exact(data: bytes, reencoded: bytes) -> None:
    """The range decoder cannot tell where its data ends: past the end it reads zeros, and it
    never looks at words it does not need, so an empty payload decodes to a whole latent and
    appended words go unnoticed. The encoder is deterministic, so a payload is valid only if
    re-encoding the decoded symbols gives it back byte for byte (cheap: encoding costs a small
    fraction of decoding)."""
    if reencoded == bytes(data):
        return
    if len(reencoded) > len(data):
        raise CodingError(f"range decoder ran past the end of its data ({len(data)} bytes; the symbols "
                          f"it decoded take {len(reencoded)})")
    if len(reencoded) < len(data):
        raise CodingError(f"range decoder left data unused ({len(data) - len(reencoded)} of {len(data)} bytes)")
    raise CodingError("range-coded data is not the encoding of the symbols it decodes to")


def _params(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64).ravel()


def _categorical(frequencies: np.ndarray):
    probabilities = np.asarray(frequencies, dtype=np.float64) / float(np.sum(frequencies))
    return constriction.stream.model.Categorical(probabilities, perfect=False)


def encode_categorical(symbols: np.ndarray, frequencies: np.ndarray) -> bytes:
    """Code ``symbols[c]`` (values 0..K-1) with the frequency table ``frequencies[c]``."""
    encoder = constriction.stream.queue.RangeEncoder()
    for row, freq in zip(symbols, frequencies):
        flat = np.ascontiguousarray(row, dtype=np.int32).ravel()
        if flat.size:
            encoder.encode(flat, _categorical(freq))
    return _to_bytes(encoder.get_compressed())


def decode_categorical(data: bytes, frequencies: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`encode_categorical` for ``count`` symbols per channel: (C, count)."""
    decoder = constriction.stream.queue.RangeDecoder(_to_words(data))
    rows = []
    try:
        for freq in frequencies:
            rows.append(np.asarray(decoder.decode(_categorical(freq), count), dtype=np.int32))
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise CodingError(f"range decoder failed: {exc}") from None
    symbols = np.stack(rows) if rows else np.zeros((0, count), dtype=np.int32)
    _check_exact(data, encode_categorical(symbols, frequencies))
    return symbols
