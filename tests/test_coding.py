"""Entropy coding and the exactness of the probability model."""

from __future__ import annotations

import numpy as np
import pytest

from sicc.coding import (
    Y_BOUND,
    CodingError,
    decode_categorical,
    decode_gaussian,
    encode_categorical,
    encode_gaussian,
)
from sicc.model.probability import ACTIVATION_LIMIT_BITS, ProbabilityModel, conv2d, conv_transpose2d


def test_gaussian_roundtrip_and_rate():
    rng = np.random.default_rng(0)
    n = 20000
    means = np.round(rng.normal(0, 4, n) * 256) / 256
    scales = np.exp(rng.uniform(np.log(0.11), np.log(40), n))
    symbols = np.clip(np.round(means + scales * rng.normal(size=n)), -Y_BOUND, Y_BOUND).astype(np.int32)
    data = encode_gaussian(symbols, means, scales)
    assert np.array_equal(decode_gaussian(data, means, scales), symbols)
    # real size close to the ideal information content under the same model
    from math import erf, sqrt

    def cdf(v):
        return 0.5 * (1 + np.vectorize(erf)(v / sqrt(2)))

    p = cdf((symbols + 0.5 - means) / scales) - cdf((symbols - 0.5 - means) / scales)
    ideal_bytes = -np.log2(np.maximum(p, 1e-12)).sum() / 8
    assert len(data) < ideal_bytes * 1.01 + 16


def test_gaussian_rejects_out_of_range_symbols():
    with pytest.raises(ValueError):
        encode_gaussian(np.array([Y_BOUND + 1]), np.zeros(1), np.ones(1))


def test_categorical_roundtrip():
    rng = np.random.default_rng(1)
    freq = rng.integers(1, 1000, size=(3, 129))
    symbols = rng.integers(0, 129, size=(3, 50))
    assert np.array_equal(decode_categorical(encode_categorical(symbols, freq), freq, 50), symbols)


def test_garbage_is_a_coding_error_not_a_crash():
    with pytest.raises(CodingError):
        decode_gaussian(b"\xff" * 64, np.zeros(1000), np.full(1000, 0.2))
    with pytest.raises(CodingError):
        decode_gaussian(b"\x00" * 6, np.zeros(10), np.ones(10))  # not whole words


@pytest.fixture(scope="module")
def exact(tiny_codec) -> ProbabilityModel:
    return tiny_codec.probability


def _level_inputs(seed: int = 0):
    from sicc.model.config import TINY

    rng = np.random.default_rng(seed)
    z = rng.integers(-6, 7, (TINY.hyper, 3, 4))
    y = rng.integers(-20, 21, (TINY.latent, 12, 16)).astype(np.int16)
    return z, y


def _all_parameters(exact: ProbabilityModel, z, y):
    hyper = exact.hyper(z)
    g = exact.config.group_size
    return hyper, [exact.level_parameters_fixed(y[: i * g], hyper, i) for i in range(exact.config.levels)]


def test_fixed_point_values_are_integers_within_the_exact_range(exact):
    z, y = _level_inputs()
    hyper, levels = _all_parameters(exact, z, y)
    assert np.array_equal(hyper, np.floor(hyper)) and np.abs(hyper).max() <= 2**ACTIVATION_LIMIT_BITS
    for mean, log_scale in levels:
        assert np.array_equal(mean, np.floor(mean)) and np.array_equal(log_scale, np.floor(log_scale))
    assert any(np.abs(mean).max() > 0 for mean, _ in levels)


def test_fixed_point_conv_is_exact_in_any_summation_order(exact):
    """The exactness argument: integer operands below 2**53 make the matrix-product convolution
    and an explicit reversed-order sum agree to the last bit (a float32 model would not)."""
    causal_w = exact.level_layers[7].causal_w
    _, y = _level_inputs(3)
    x = y[: causal_w.shape[1]].astype(np.float64) * exact.unit
    direct = conv2d(x, causal_w, 1, (1, 1))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    h, w = x.shape[1:]
    reversed_sum = np.zeros_like(direct)
    for c in reversed(range(causal_w.shape[1])):
        for i in reversed(range(3)):
            for j in reversed(range(3)):
                reversed_sum += causal_w[:, c, i, j][:, None, None] * padded[c, i : i + h, j : j + w][None]
    assert np.array_equal(direct, reversed_sum)


def test_transposed_conv_matches_its_definition():
    """conv_transpose2d (used by h_s) against the scatter definition of a transposed convolution."""
    rng = np.random.default_rng(4)
    x = rng.integers(-5, 6, (3, 4, 5)).astype(np.float64)
    weight = rng.integers(-9, 10, (3, 2, 5, 5)).astype(np.float64)
    got = conv_transpose2d(x, weight, 2, 2, 1)
    full = np.zeros((2, 3 * 2 + 5 + 1, 4 * 2 + 5 + 1))
    for c in range(3):
        for i in range(4):
            for j in range(5):
                full[:, 2 * i : 2 * i + 5, 2 * j : 2 * j + 5] += x[c, i, j] * weight[c]
    assert got.shape == (2, 8, 10) and np.array_equal(got, full[:, 2:10, 2:12])


@pytest.mark.parametrize("band_rows", [1, 2, 5, None])
def test_banded_probability_model_equals_the_whole_image(exact, band_rows):
    """The codec evaluates each level in bands of rows (bounded memory); the integers must be
    those of one whole-image pass, including the bands at the top and bottom edges."""
    z, y = _level_inputs(5)
    hyper, reference = _all_parameters(exact, z, y)
    base = exact.hyper_base(z)
    for level, (mean_fixed, log_scale_fixed) in enumerate(reference):
        means, scales = exact.level_parameters(y, base, level, band_rows=band_rows)
        assert np.array_equal(means, mean_fixed / exact.unit), level
        assert np.array_equal(scales, exact.scale_of(log_scale_fixed)), level
