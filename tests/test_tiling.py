"""Tiled transforms equal untiled ones: no seams at tile borders."""

from __future__ import annotations

import numpy as np
import torch

from sicc.tiling import tiled_analysis, tiled_hyper_analysis, tiled_synthesis, tiled_synthesis_image
from tests.conftest import synthetic_image


def test_tiled_analysis_matches_whole_image(tiny_codec):
    pixels = synthetic_image(128, 192, seed=3)
    with torch.no_grad():
        whole = tiled_analysis(tiny_codec.model.g_a, pixels, tile=1000)
        tiled = tiled_analysis(tiny_codec.model.g_a, pixels, tile=3)  # 48 px tiles, 6 of them
    torch.testing.assert_close(tiled, whole, atol=1e-4, rtol=1e-4)


def test_tiled_synthesis_matches_whole_image(tiny_codec):
    y = torch.round(torch.randn(1, tiny_codec.config.latent, 8, 12, generator=torch.Generator().manual_seed(0)) * 4)
    with torch.no_grad():
        whole = tiled_synthesis(tiny_codec.model.g_s, y, 120, 180, tile=1000)
        tiled = tiled_synthesis(tiny_codec.model.g_s, y, 120, 180, tile=3)
    assert whole.shape == (120, 180, 3)
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999
    with torch.no_grad():  # the decoder's variant pastes the same tiles into a PIL image
        image = tiled_synthesis_image(tiny_codec.model.g_s, y, 120, 180, tile=3)
    assert image.size == (180, 120) and np.array_equal(np.asarray(image), tiled)


def test_tiled_hyper_analysis_matches_whole_latent(tiny_codec):
    y = torch.randn(1, tiny_codec.config.latent, 24, 40, generator=torch.Generator().manual_seed(1)) * 4
    with torch.no_grad():
        whole = tiny_codec.model.h_a(y)
        tiled = tiled_hyper_analysis(tiny_codec.model.h_a, y, tile=2)  # 8-latent tiles, 15 of them
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, atol=1e-4, rtol=1e-4)
