"""Shared fixtures: a tiny model (untrained, a few thousand parameters) and small test images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def kodak_dir() -> Path:
    """The Kodak evaluation images: $SICC_KODAK, else ../shared/data/kodak beside the repository."""
    return Path(os.environ.get("SICC_KODAK") or SHARED / "kodak")


KODAK_MISSING = (f"Kodak images not found in {kodak_dir()}: set SICC_KODAK to a folder holding "
                 "kodim01.png ... kodim24.png (see README, 'Run the tests')")


TINY_GOLDEN_WEIGHTS = REPO / "tests" / "data" / "golden-tiny.npz"
"""The committed tiny model (untrained, seed 0): what the suite uses where torch is not installed."""

TORCH_MISSING = "needs torch (the training extras: pip install -e \".[dev]\"); the light \".[test]\" install has none"


def make_tiny_weights(path: Path, seed: int = 0) -> Path:
    """A weights file of an untrained tiny network, exported with torch; without torch (the light
    ``.[test]`` install), the committed seed-0 tiny model (tests/data/golden-tiny.npz) is copied."""
    try:
        import torch
    except ImportError:
        import shutil

        if seed != 0:
            pytest.skip(f"a tiny model of seed {seed} {TORCH_MISSING}")
        shutil.copyfile(TINY_GOLDEN_WEIGHTS, path)
        return path

    from sicc.model.config import TINY
    from sicc.train.export import export_weights
    from sicc.train.objective import SICTrainable

    torch.manual_seed(seed)
    export_weights(SICTrainable(TINY), path, {"note": "untrained test model"})
    return path


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus texture: something a codec has to work for."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([
        128 + 100 * np.sin(xx / 17.0 + yy / 29.0),
        128 + 90 * np.cos(yy / 13.0),
        128 + 80 * np.sin((xx + yy) / 23.0),
    ], axis=2)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def image_with_metadata(height: int, width: int, seed: int, note: str, icc: bytes):
    """A PIL image that carries an ICC profile and an EXIF block, so files get ICCP and EXIF chunks."""
    from PIL import Image

    image = Image.fromarray(synthetic_image(height, width, seed=seed))
    exif = Image.Exif()
    exif[0x010E] = note  # ImageDescription
    image.info["icc_profile"] = icc
    image.info["exif"] = exif.tobytes()
    return image


def decode_collecting_warnings(codec, data: bytes, **kwargs):
    """Deterministic decode of ``data``: the pixels and the SiccWarnings it raised."""
    import warnings

    import sicc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = codec.decode(data, spread=0.0, **kwargs)
    return np.asarray(images[0]), [w for w in caught if issubclass(w.category, sicc.SiccWarning)]


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    return make_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.npz")


@pytest.fixture(scope="session")
def tiny_codec(tiny_weights):
    from sicc import Codec

    return Codec.load(tiny_weights)


@pytest.fixture(scope="session")
def small_image() -> np.ndarray:
    return synthetic_image(72, 100)


@pytest.fixture(scope="session")
def small_file(tiny_codec, small_image) -> bytes:
    return tiny_codec.encode(small_image)
