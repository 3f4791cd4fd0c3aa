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


def matched_change(rows: Sequence[dict], reference: Sequence[dict], targets: Iterable[float],
                   metrics: Iterable[str] = METRICS, key: str = "level") -> list[dict]:
    """How much ``rows`` moved a metric against ``reference`` at each target bpp, with its noise.

    Both are per-image rows of one codec (one curve point per ``key`` and image). On the images
    both hold, each side's matched value is read as in :func:`matched` (the image-set average
    curve, log-bpp interpolation) and ``change`` is the difference. ``se`` is its jackknife
    standard error over images: the same difference recomputed with each image left out in turn,
    so it says how much the figure depends on which photos were measured (``None`` with fewer
    than two images or where a target leaves either curve).
    """
    metrics, targets = tuple(metrics), tuple(targets)
    images = sorted({r["image"] for r in rows} & {r["image"] for r in reference})

    def change(subset: set[str]) -> list[dict]:
        new = matched(group_mean([r for r in rows if r["image"] in subset], key), targets, metrics)
        old = matched(group_mean([r for r in reference if r["image"] in subset], key), targets, metrics)
        return [{m: None if a[m] is None or b[m] is None else a[m] - b[m] for m in metrics} for a, b in zip(new, old)]

    whole = change(set(images))
    left_out = [change(set(images) - {image}) for image in images] if len(images) > 1 else []
    out = []
    for i, target in enumerate(targets):
        point: dict = {"bpp": float(target), "images": len(images)}
        for m in metrics:
            values = [rep[i][m] for rep in left_out]
            se = None
            if whole[i][m] is not None and values and None not in values:
                n = len(values)
                se = math.sqrt((n - 1) / n * float(np.sum((np.array(values) - np.mean(values)) ** 2)))
            point[m] = {"change": whole[i][m], "se": se}
        out.append(point)
    return out


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
