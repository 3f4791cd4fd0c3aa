"""Same file, seed and spread: the same pixels, whatever the thread count, run or device (issue #6).

The README promises "the same PNG at any --threads"; sampling must still
differ across seeds and samples, and spread 0 must not depend on the seed.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import sicc
from sicc.coding import decode_categorical, decode_gaussian
from sicc.model.config import SPATIAL_FACTOR
from sicc.model.weights import Z_BOUND
from tests.clitools import cli_subprocess
from tests.conftest import synthetic_image
from tests.fuzz import file_with_symbols


@pytest.fixture(scope="module")
def big_file(tiny_codec) -> bytes:
    """Large enough (256x192, two synthesis tiles' worth of work) for torch to split work over threads."""
    return tiny_codec.encode(synthetic_image(192, 256, seed=31))


@pytest.fixture(scope="module")
def symbols_file(tiny_codec) -> bytes:
    """Random non-zero latents in every level (the tiny model's own analysis gives all zeros)."""
    return file_with_symbols(tiny_codec, 128, 192, seed=32)


def decode_at(codec, data: bytes, threads: int, **kwargs) -> list[np.ndarray]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return [np.asarray(image) for image in codec.decode(data, **kwargs)]
    finally:
        torch.set_num_threads(before)


def test_thread_count_does_not_change_pixels(tiny_codec, big_file, symbols_file):
    """Sampled (level 5, two samples) and full decodes are identical at 1, 2 and 4 threads."""
    for data, kwargs in ((big_file, {"level": 5, "samples": 2, "seed": 3, "spread": 2.0}),
                         (symbols_file, {"spread": 0.0})):
        reference = decode_at(tiny_codec, data, 1, **kwargs)
        for threads in (2, 4):
            got = decode_at(tiny_codec, data, threads, **kwargs)
            for a, b in zip(reference, got):
                assert np.array_equal(a, b), (threads, kwargs)


def test_two_runs_give_byte_identical_pngs(tmp_path, tiny_codec, tiny_weights, big_file):
    """Two `sicc decode` processes, at --threads 1 and --threads 3: the same PNG bytes, and the
    pixels of the in-process decode."""
    source = tmp_path / "in.sic"
    source.write_bytes(sicc.truncate(big_file, level=6))
    outputs = []
    for threads in (1, 3):
        out = tmp_path / f"run{threads}.png"
        result = cli_subprocess(["decode", source, "-o", out, "--samples", 2, "--seed", 11, "--spread", 1.5,
                                 "--threads", threads, "--weights", tiny_weights])
        assert result.code == 0, result.stderr
        outputs.append([(tmp_path / f"run{threads}-{k}.png").read_bytes() for k in range(2)])
    assert outputs[0] == outputs[1]
    expected = decode_at(tiny_codec, source.read_bytes(), 1, samples=2, seed=11, spread=1.5)
    for k in range(2):
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"run1-{k}.png")), expected[k])


def test_repeated_decodes_are_identical(tiny_codec, small_file):
    first = decode_at(tiny_codec, small_file, 1, level=3, samples=3, seed=7)
    second = decode_at(tiny_codec, small_file, 1, level=3, samples=3, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_sampled_decodes_differ_across_seeds_and_samples(tiny_codec, small_file):
    """Seed 0 and seed 1 give different pictures; so do samples 0 and 1 of one call, and
    sample k of a call equals the single-sample decode of the same stream only when k == 0."""
    a = decode_at(tiny_codec, small_file, 1, level=3, samples=2, seed=0)
    b = decode_at(tiny_codec, small_file, 1, level=3, samples=2, seed=1)
    assert not np.array_equal(a[0], b[0])
    assert not np.array_equal(a[0], a[1])
    single = decode_at(tiny_codec, small_file, 1, level=3, samples=1, seed=0)
    assert np.array_equal(single[0], a[0])


def test_spread_zero_ignores_the_seed(tiny_codec, small_file):
    """spread=0 is the deterministic mean decode: all samples identical, for any seed."""
    images = decode_at(tiny_codec, small_file, 1, level=3, samples=3, seed=0, spread=0.0)
    other = decode_at(tiny_codec, small_file, 1, level=3, samples=1, seed=12345, spread=0.0)
    assert all(np.array_equal(images[0], im) for im in images[1:] + other)
    sampled = decode_at(tiny_codec, small_file, 1, level=3, seed=0, spread=2.0)
    assert not np.array_equal(images[0], sampled[0])  # the spread does matter when it is not 0


def test_a_complete_file_decodes_the_same_for_any_seed(tiny_codec, small_file):
    """With all levels present nothing is sampled: seed and spread change nothing."""
    a = decode_at(tiny_codec, small_file, 1, seed=0, spread=2.0)
    b = decode_at(tiny_codec, small_file, 1, seed=99, spread=0.5)
    assert np.array_equal(a[0], b[0])


# -- CPU vs CUDA --------------------------------------------------------------------------------
def _to_device(value, device):
    """A copy of ``value`` with every tensor inside (lists, tuples, dataclasses, objects) on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _to_device(getattr(value, f.name), device)
                                             for f in dataclasses.fields(value) if f.init})
    return value


def decode_symbols_on(codec, data: bytes, device: str) -> torch.Tensor:
    """The integer y of every level in ``data``, with the exact entropy-parameter network run on
    ``device``; asserts at each level that its integers equal those computed on the CPU."""
    parsed = codec.parse(data)
    exact = copy.copy(codec.exact)
    for name, value in vars(codec.exact).items():
        setattr(exact, name, _to_device(value, device))
    lh = -(-parsed.header.height // SPATIAL_FACTOR) * 4
    lw = -(-parsed.header.width // SPATIAL_FACTOR) * 4
    z = decode_categorical(parsed.hyper, codec.weights.z_frequencies, (lh // 4) * (lw // 4))
    z = torch.from_numpy(z.astype(np.int64) - Z_BOUND).view(1, -1, lh // 4, lw // 4)
    hyper_cpu, hyper_dev = codec.exact.hyper(z), exact.hyper(z.to(device))
    assert torch.equal(hyper_cpu.double(), hyper_dev.cpu().double())
    g = codec.config.group_size
    y = torch.zeros((1, len(parsed.levels) * g, lh, lw), dtype=hyper_cpu.dtype)
    for level, coded in enumerate(parsed.levels):
        previous = y[:, : level * g]
        mean_cpu, log_scale_cpu = codec.exact.level_parameters(previous, hyper_cpu, level)
        mean_dev, log_scale_dev = exact.level_parameters(previous.to(device), hyper_dev, level)
        assert torch.equal(mean_cpu, mean_dev.cpu()) and torch.equal(log_scale_cpu, log_scale_dev.cpu()), level
        unit = codec.exact.unit
        symbols = decode_gaussian(coded, (mean_dev.cpu() / unit).numpy()[0], codec._scales(log_scale_dev.cpu())[0])
        y[0, level * g : (level + 1) * g] = torch.from_numpy(symbols.astype(np.float64)).to(y.dtype)
    return y


def test_symbol_decoding_helper_matches_the_codec(tiny_codec, symbols_file):
    """The loop the CUDA test uses, run on the CPU, reads exactly the codec's own symbols
    (so the CUDA comparison below tests the device, not a different decoder)."""
    y = decode_symbols_on(tiny_codec, symbols_file, "cpu")
    _, expected = tiny_codec.decode_latents(tiny_codec.parse(symbols_file), 16)
    assert y.shape == expected.shape and torch.equal(y.double(), expected.double())
    assert (y != 0).float().mean() > 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_entropy_decoding_is_identical_on_cpu_and_cuda(tiny_codec, symbols_file):
    """The exact entropy-parameter network gives the same integers on CUDA as on CPU, so the
    range decoder reads the same symbols of every level."""
    on_cuda = decode_symbols_on(tiny_codec, symbols_file, "cuda")
    _, on_cpu = tiny_codec.decode_latents(tiny_codec.parse(symbols_file), 16)
    assert torch.equal(on_cuda.double(), on_cpu.double())
