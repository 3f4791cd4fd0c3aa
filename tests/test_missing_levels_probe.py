"""The guesses of scripts/missing_levels_probe.py for a missing level's latents, on known Gaussians.

The probe's figures (docs/training.md, "A probe of the scored decode's guess") are only as good as
these: a first draft summed the expected symbol over a fixed range of symbols and silently set every
latent with a large mean to about zero.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from tests.conftest import TORCH_MISSING

torch = pytest.importorskip("torch", reason=TORCH_MISSING)

_spec = importlib.util.spec_from_file_location(
    "missing_levels_probe", Path(__file__).resolve().parents[1] / "scripts" / "missing_levels_probe.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def _expected_symbol(mean: float, scale: float) -> float:
    """sum_k k P(k) for the unit-bin quantized Gaussian, in float64 over a wide range."""
    def cdf(x):
        return 0.5 * (1 + math.erf(x / (scale * math.sqrt(2))))
    centre = round(mean)
    ks = range(centre - 200, centre + 201)
    p = [cdf(k + 0.5 - mean) - cdf(k - 0.5 - mean) for k in ks]
    return sum(k * q for k, q in zip(ks, p)) / sum(p)


def test_round_and_mean_fills():
    mean = torch.tensor([0.4, -0.6, 40.3, -100.7, 2.5])
    log_scale = torch.zeros_like(mean)
    assert torch.equal(probe.fill_value("round", mean, log_scale), torch.round(mean))
    fill = probe.fill_value("mean", mean, log_scale)
    assert torch.equal(fill * 256, torch.round(fill * 256))  # on the exact network's grid
    assert (fill - mean).abs().max() <= 0.5 / 256
    shrunk = probe.fill_value("shrink0.5", mean, log_scale)
    assert (shrunk - 0.5 * mean).abs().max() <= 0.5 / 256


@pytest.mark.parametrize("mean", [0.4, -0.3, 1.5, 40.3, -100.7, 250.2])
@pytest.mark.parametrize("scale", [0.2, 1.0, 3.0, 12.0])
def test_expected_symbol_matches_the_quantized_gaussian(mean, scale):
    got = probe.fill_value("expect", torch.tensor([mean], dtype=torch.float64),
                           torch.tensor([math.log(scale)], dtype=torch.float64))
    assert got.item() == pytest.approx(_expected_symbol(mean, scale), abs=1e-4)


def test_unknown_fill_is_refused():
    with pytest.raises(SystemExit, match="unknown --fill"):
        probe.fill_value("median", torch.zeros(1), torch.zeros(1))
