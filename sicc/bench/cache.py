"""Baseline results do not change when the model does: measure each once, then reuse.

A baseline row (one image at one point of a codec's sweep) is reused only when
everything that could change it is the same: the codec's name, library
version and settings, the point of the sweep, the image's pixels (SHA-256)
and the metric implementations' versions. Rows live in a JSON cache file
(``$SICC_BENCH_CACHE``, default ``~/.cache/sicc/bench-baselines.json``), and
the committed ``bench/results.json`` seeds it: its per-image rows carry the
same key fields, so a fresh clone re-measures only sicc.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from PIL import Image

CACHE_SCHEMA = "sicc-bench-baselines/1"
_METRIC_PACKAGES = ("lpips", "DISTS_pytorch", "pytorch_msssim", "torch")


def default_cache_path() -> Path:
    env = os.environ.get("SICC_BENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sicc" / "bench-baselines.json"


def metrics_version() -> str:
    """The metric implementations a baseline row was measured with."""
    parts = []
    for name in _METRIC_PACKAGES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "-"
        parts.append(f"{name} {version.split('+')[0]}")
    return ", ".join(parts)


def image_digest(image: Image.Image) -> str:
    """SHA-256 of the RGB pixels and the size (what the codecs and metrics see)."""
    h = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    h.update(image.convert("RGB").tobytes())
    return h.hexdigest()


def row_key(codec: str, library: str, settings: dict, knob: str, value: float, digest: str, metrics: str) -> str:
    return json.dumps([codec, library, settings, knob, float(value), digest, metrics], sort_keys=True)


class BaselineCache:
    """Baseline rows by key; ``save`` writes the file atomically."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else default_cache_path()
        self.rows: dict[str, dict] = {}
        self.hits = self.misses = 0
        try:
            data = json.loads(self.path.read_text())
            if data.get("schema") == CACHE_SCHEMA:
                self.rows = dict(data.get("rows", {}))
        except (OSError, ValueError):
            pass

    def seed_from_results(self, results: dict, digests: dict[str, str]) -> int:
        """Adopt the per-image baseline rows of a results.json whose rows carry their key fields.

        ``digests`` maps image names to the pixel digests of the images being measured now:
        a row is adopted only for an image with the same pixels.
        Rows written before the key fields were recorded (no ``image_sha256``) are adopted by
        image name when that run used uncropped images, with the current metric versions.
        """
        adopted = 0
        baselines = results.get("baselines", {})
        legacy_ok = results.get("settings", {}).get("crop") is None
        for name, rows in results.get("per_image", {}).get("baselines", {}).items():
            meta = baselines.get(name, {})
            if "knob" not in meta:
                continue
            for row in rows:
                digest = row.get("image_sha256")
                if digest is None and legacy_ok:
                    digest = digests.get(row.get("image"))
                if digest is None or digests.get(row.get("image")) != digest:
                    continue
                row = {**row, "image_sha256": digest, "metrics_version": row.get("metrics_version", metrics_version())}
                key = row_key(name, meta.get("library", ""), meta.get("settings", {}), meta["knob"],
                              row[meta["knob"]], digest, row["metrics_version"])
                if key not in self.rows:
                    self.rows[key] = row
                    adopted += 1
        return adopted

    def get(self, key: str) -> dict | None:
        row = self.rows.get(key)
        if row is None:
            self.misses += 1
        else:
            self.hits += 1
        return dict(row) if row is not None else None

    def put(self, key: str, row: dict) -> None:
        self.rows[key] = dict(row)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"schema": CACHE_SCHEMA, "rows": self.rows}) + "\n")
        os.replace(tmp, self.path)
