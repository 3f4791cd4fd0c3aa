"""Entropy coding and the exactness of the probability model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sicc.coding import (
    Y_BOUND,
    CodingError,
    decode_categorical,
    decode_gaussian,
    encode_categorical,
    encode_gaussian,
)
from sicc.model.fixed_point import FixedPointEntropyModel


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
def exact(tiny_codec) -> FixedPointEntropyModel:
    return tiny_codec.exact


def _level_inputs(seed: int = 0):
    from sicc.model.config import TINY

    gen = torch.Generator().manual_seed(seed)
    z = torch.randint(-6, 7, (1, TINY.hyper, 3, 4), generator=gen)
    y = torch.randint(-20, 21, (1, TINY.latent, 12, 16), generator=gen).double()
    return z, y


def _all_parameters(exact: FixedPointEntropyModel, z, y):
    hyper = exact.hyper(z)
    g = exact.config.group_size
    return hyper, [exact.level_parameters(y[:, : i * g], hyper, i) for i in range(exact.config.levels)]


def test_fixed_point_values_are_integers_and_thread_independent(exact):
    z, y = _level_inputs()
    results = []
    for threads in (1, 2, 4):
        torch.set_num_threads(threads)
        results.append(_all_parameters(exact, z, y))
    torch.set_num_threads(2)
    hyper, levels = results[0]
    assert torch.equal(hyper, torch.round(hyper))
    for other_hyper, other_levels in results[1:]:
        assert torch.equal(hyper, other_hyper)
        for (m1, s1), (m2, s2) in zip(levels, other_levels):
            assert torch.equal(m1, m2) and torch.equal(s1, s2)


def test_fixed_point_conv_is_exact_in_any_summation_order(exact):
    """The exactness argument: integer operands below 2**53 make conv2d and an explicit
    reversed-order sum agree to the last bit (a float32 model would not)."""
    causal_w = exact.level_layers[7][0]
    _, y = _level_inputs(3)
    x = y[:, : causal_w.shape[1]] * exact.unit
    direct = F.conv2d(x, causal_w, padding=1)
    cols = F.unfold(x, 3, padding=1)  # (1, Cin*9, L)
    w = causal_w.reshape(causal_w.shape[0], -1)
    reversed_sum = torch.zeros_like(direct).reshape(1, causal_w.shape[0], -1)
    for k in reversed(range(w.shape[1])):
        reversed_sum += w[:, k : k + 1] * cols[:, k : k + 1]
    assert torch.equal(direct.reshape_as(reversed_sum), reversed_sum)


def test_real_size_tracks_the_model_estimate(tiny_codec, small_image):
    """Coded bytes per level stay close to the float model's own bit estimate."""
    import sicc

    data = tiny_codec.encode(small_image)
    est = tiny_codec.estimated_bits(small_image)
    info = sicc.info(data)
    coded = sum(lv.bytes - 13 for lv in info.levels)  # chunk framing: 12 bytes + level byte
    estimated = sum(est["level_bits"]) / 8
    # the untrained tiny model has tiny levels, so allow word padding (<= 4 bytes a level)
    assert coded <= estimated * 1.05 + 4 * len(info.levels)
    assert coded >= estimated * 0.9


@pytest.mark.parametrize("band_rows", [1, 2, 5, None])
def test_banded_probability_model_equals_the_whole_image(tiny_codec, band_rows):
    """The codec evaluates each level in bands of rows (bounded memory); the integers must be
    those of one whole-image pass, including the bands at the top and bottom edges."""
    exact = tiny_codec.exact
    z, y = _level_inputs(5)
    hyper, reference = _all_parameters(exact, z, y)
    base = exact.hyper_base(z)
    assert torch.equal(exact.hyper(z), hyper)
    for level, (mean_fp, log_scale_fp) in enumerate(reference):
        means, scales = tiny_codec._level_model(y.to(torch.int16), base, level, band_rows=band_rows)
        assert np.array_equal(means, (mean_fp / exact.unit).numpy()[0]), level
        assert np.array_equal(scales, tiny_codec._scales(log_scale_fp)[0]), level
