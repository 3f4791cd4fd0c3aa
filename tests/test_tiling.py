"""Tiled transforms equal untiled ones (no seams at tile borders), and the tile grid is
fixed by the image size alone."""

from __future__ import annotations

import numpy as np
import pytest

from sicc.tiling import (
    ordered_map,
    split,
    tile_grid,
    tiled_analysis,
    tiled_hyper_analysis,
    tiled_synthesis,
    tiled_synthesis_image,
)
from tests.conftest import synthetic_image


def test_split_covers_evenly():
    assert split(48, 32) == [(0, 24), (24, 48)]
    assert split(32, 32) == [(0, 32)]
    assert split(5, 32) == [(0, 5)]
    parts = split(1000, 32)
    assert parts[0][0] == 0 and parts[-1][1] == 1000 and all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    sizes = [b - a for a, b in parts]
    assert max(sizes) - min(sizes) <= 1 and max(sizes) <= 32


def test_grid_cores_tile_the_plane_once():
    cover = np.zeros((37, 70), dtype=int)
    for (c0, c1, d0, d1), (t0, t1, l0, l1) in tile_grid(37, 70, 16, 4):
        cover[c0:c1, d0:d1] += 1
        assert t0 == max(c0 - 4, 0) and t1 == min(c1 + 4, 37) and l0 == max(d0 - 4, 0) and l1 == min(d1 + 4, 70)
    assert (cover == 1).all()


@pytest.mark.parametrize("threads", [1, 3])
def test_ordered_map_keeps_the_order(threads):
    assert list(ordered_map(lambda v: v * v, range(20), threads)) == [v * v for v in range(20)]


def test_tiled_analysis_matches_whole_image(tiny_codec):
    pixels = synthetic_image(128, 192, seed=3)
    whole = tiled_analysis(tiny_codec.transforms.g_a, pixels, tile=1000)
    tiled = tiled_analysis(tiny_codec.transforms.g_a, pixels, tile=3, threads=2)  # 48 px tiles, 6 of them
    np.testing.assert_allclose(tiled, whole, atol=1e-4, rtol=1e-4)


def test_tiled_synthesis_matches_whole_image(tiny_codec):
    rng = np.random.default_rng(0)
    y = np.round(rng.normal(0, 4, (tiny_codec.config.latent, 8, 12))).astype(np.int16)
    whole = tiled_synthesis(tiny_codec.transforms.g_s, y, 120, 180, tile=1000)
    tiled = tiled_synthesis(tiny_codec.transforms.g_s, y, 120, 180, tile=3)
    assert whole.shape == (120, 180, 3)
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999
    # the decoder's variant pastes the same tiles into a PIL image, at any thread count
    for threads in (1, 4):
        image = tiled_synthesis_image(tiny_codec.transforms.g_s, y, 120, 180, tile=3, threads=threads)
        assert image.size == (180, 120) and np.array_equal(np.asarray(image), tiled)


def test_tiled_hyper_analysis_matches_whole_latent(tiny_codec):
    y = (np.random.default_rng(1).normal(0, 4, (tiny_codec.config.latent, 24, 40))).astype(np.float32)
    whole = tiny_codec.transforms.h_a(y[None])[0]
    tiled = tiled_hyper_analysis(tiny_codec.transforms.h_a, y, tile=2)  # 8-latent tiles, 15 of them
    assert tiled.shape == whole.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-4, rtol=1e-4)


def test_a_session_prepared_in_the_background_is_the_one_decoding_uses(tiny_weights, small_file):
    from sicc.codec import Codec
    from sicc.model.weights import load_weights

    codec = Codec(load_weights(tiny_weights))  # not the cached one: no session built yet
    thread = codec.transforms.prepare("g_s")
    assert thread is not None
    thread.join()
    built = codec.transforms.session("g_s")
    assert codec.transforms.prepare("g_s") is None  # built already: nothing to start
    pixels = np.asarray(codec.decode(small_file, threads=2)[0])
    assert codec.transforms.session("g_s") is built
    fresh = Codec(load_weights(tiny_weights))
    np.testing.assert_array_equal(pixels, np.asarray(fresh.decode(small_file, threads=1)[0]))


def test_a_failed_background_build_is_reported_by_the_first_use(tiny_weights):
    import dataclasses

    from sicc.codec import Codec
    from sicc.errors import WeightsError
    from sicc.model.weights import load_weights

    weights = load_weights(tiny_weights)
    codec = Codec(dataclasses.replace(weights, graphs={**weights.graphs, "g_s": b"not an onnx graph"}))
    codec.transforms.prepare("g_s").join()
    with pytest.raises(WeightsError, match="g_s graph"):
        codec.transforms.session("g_s")
