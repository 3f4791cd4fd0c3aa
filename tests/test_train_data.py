"""Training data: crop packs that travel to a GPU machine, and reproducible crop batches."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import TORCH_MISSING  # noqa: E402
pytest.importorskip("torch", reason=TORCH_MISSING)

import torch

from sicc.train.data import CropSampler, load_pack, write_pack
from tests.conftest import synthetic_image


def test_pack_roundtrip_respects_the_size_budget(tmp_path):
    images = [synthetic_image(80, 96, seed=s) for s in range(3)]
    out = tmp_path / "crops.npz"
    count = write_pack(images, out, crop=64, max_bytes=60_000)
    assert count > 3 and out.stat().st_size <= 60_000 + 2_000  # npz framing
    crops = load_pack(out)
    assert len(crops) == count and all(c.shape == (64, 64, 3) and c.dtype == np.uint8 for c in crops)


def test_sampler_is_reproducible_and_resumable():
    images = [synthetic_image(80, 96, seed=s) for s in range(3)]
    a, b = CropSampler(images, 64, 4, seed=5), CropSampler(images, 64, 4, seed=5)
    first = a.next_batch()
    assert first.shape == (4, 3, 64, 64) and 0 <= float(first.min()) and float(first.max()) <= 1
    assert torch.equal(first, b.next_batch())
    state = a.state()
    after = a.next_batch()
    c = CropSampler(images, 64, 4, seed=99)
    c.set_state(state)
    assert torch.equal(after, c.next_batch())
    assert not torch.equal(after, CropSampler(images, 64, 4, seed=6).next_batch())
