"""Rate-distortion curves: averaging over images and reading a metric at a given bpp.

A codec's curve is the image-set average at each operating point (one
quality setting, or one sicc level): mean bpp and mean metric over images.
A metric "at 0.2 bpp" is read off that average curve by linear interpolation
in log(bpp) between the two neighbouring points; targets outside the curve's
bpp range give ``None`` (no extrapolation).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from .metrics import METRICS

MATCH_METHOD = (
    "Each codec's curve is the image-set average per operating point (mean bpp, mean metric over "
    "the same images; sicc: per level). The metric at a target bpp is linearly interpolated in "
    "log(bpp) between the two neighbouring points of that average curve; targets outside the "
    "curve's bpp range are null (no extrapolation)."
)

TARGET_BPPS = (0.1, 0.2, 0.3, 0.5)


def mean_point(rows: Sequence[dict], keys: Iterable[str] = ("bpp", "bytes", *METRICS)) -> dict:
    """Average of per-image rows for one operating point (NaNs skipped, e.g. MS-SSIM on tiny crops)."""
    out = {}
    for key in keys:
        values = [r[key] for r in rows if key in r and r[key] is not None and not _isnan(r[key])]
        out[key] = float(np.mean(values)) if values else None
    return out


def group_mean(rows: Iterable[dict], key: str) -> list[dict]:
    """Image-set average per operating point ``key`` (a level or a quality setting), in key order."""
    groups: dict = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r)
    keys = ("bpp", "bytes", "est_bpp", "overhead_pct", *METRICS)
    return [{key: k, "images": len(g), **mean_point(g, keys)} for k, g in sorted(groups.items())]


def interpolate(points: Sequence[dict], metric: str, bpp: float) -> float | None:
    """``metric`` at ``bpp`` on a curve of {"bpp", metric} points, linear in log(bpp)."""
    pts = sorted((p["bpp"], p[metric]) for p in points if p.get(metric) is not None and p["bpp"] > 0)
    if not pts:
        return None
    xs = np.log([b for b, _ in pts])
    ys = np.array([v for _, v in pts], dtype=float)
    x = math.log(bpp)
    if x < xs[0] - 1e-12 or x > xs[-1] + 1e-12:
        return None
    return float(np.interp(x, xs, ys))


def matched(points: Sequence[dict], targets: Iterable[float], metrics: Iterable[str] = METRICS) -> list[dict]:
    """One row per target bpp with every metric interpolated on the curve."""
    metrics = tuple(metrics)
    return [{"bpp": float(t), **{m: interpolate(points, m, t) for m in metrics}} for t in targets]


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
