"""``python -m sicc.train validate``'s comparison: where a model's rates moved (a run that trains the
encoder), the change is also given at matched rates, read off both curves as the benchmark does."""

from __future__ import annotations

import math
import re

import numpy as np

from sicc.train.validate import Scores, format_comparison

LEVELS = (1, 2, 4)


def _scores(rate_factor: float, dists_shift: float, photos: int = 3) -> Scores:
    """A curve on which DISTS and PSNR are linear in log(bpp) (so interpolation is exact)."""
    values = {}
    for level in LEVELS:
        bpp = np.full(photos, 0.1 * level * rate_factor)
        noise = np.linspace(-0.001, 0.001, photos)
        values[(0.0, level, "bpp")] = bpp
        values[(0.0, level, "dists")] = 0.5 - 0.1 * np.log(bpp / 0.1) + dists_shift + noise
        values[(0.0, level, "lpips")] = 0.4 - 0.05 * np.log(bpp / 0.1) + noise
        values[(0.0, level, "psnr")] = 20 + 3 * np.log(bpp / 0.1) + noise
    return Scores(values)


def test_moved_rates_are_compared_at_matched_rates():
    text = format_comparison(["a", "b"], [_scores(1.0, 0.0), _scores(1.1, -0.01)])
    assert "the rates moved" in text
    lines = {int(m.group(1)): line for line in text.splitlines()
             if (m := re.match(r"  at level (\d)'s", line))}
    assert set(lines) == set(LEVELS)
    assert "–" in lines[1] and "+10.0 %" in lines[1]  # level 1's rate lies below b's curve: no extrapolation
    for level in (2, 4):
        dists = float(re.search(r"dists ([+-][0-9.]+)", lines[level]).group(1))
        lpips = float(re.search(r"lpips ([+-][0-9.]+)", lines[level]).group(1))
        assert math.isclose(dists, -0.01, abs_tol=1e-4) and math.isclose(lpips, 0.0, abs_tol=1e-4)
    # at the same level (not matched) b looks better than it is: it spends 10 % more
    same = re.search(r"  level 2: dists ([+-][0-9.]+)", text)
    assert float(same.group(1)) < -0.01 - 0.1 * math.log(1.1) + 1e-3


def test_unmoved_rates_give_no_matched_comparison():
    text = format_comparison(["a", "b"], [_scores(1.0, 0.0), _scores(1.0, -0.01)])
    assert "level 2: dists -0.0100" in text and "the rates moved" not in text


def test_a_point_whose_jackknife_leaves_the_curve_prints_without_its_error():
    """One photo's rate rises so much that leaving it out takes the curve's top end below the target:
    the change is still given, its SE is "–" (matched_change's None), and nothing raises."""
    base, other = _scores(1.0, 0.0), _scores(1.0, -0.01)
    other.values[(0.0, 4, "bpp")] = np.array([0.3, 0.3, 0.9])  # mean 0.5; without the third, 0.3 < 0.4
    text = format_comparison(["a", "b"], [base, other])
    line = next(line for line in text.splitlines() if line.startswith("  at level 4's"))
    assert re.search(r"dists [+-][0-9.]+ ± –", line)
