"""sicc's rate-distortion, one point per progressive level, measured on real files.

Each image is encoded once at full depth; level L is the byte prefix that
``truncate(data, level=L)`` returns, so the rate counted is exactly what a
client that stops downloading after level L has received.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .images import BenchImage
from .metrics import Metrics, Reference

DET = "det"
SAMPLED = "sampled"


@dataclass(frozen=True)
class DecodeMode:
    """How a level is decoded: deterministic mean (spread 0) or one sampled draw."""

    name: str
    spread: float
    seed: int = 0


def load_codec(weights: Path | None):
    """The codec under test: a given weights file, else the shipped model."""
    import sicc

    return sicc.Codec.load(Path(weights)) if weights else sicc.Codec.default()


@dataclass
class ImageResult:
    """Per-image outputs that later stages (synonymy) reuse instead of decoding again."""

    data: bytes
    prefixes: dict[int, bytes]
    decoded: dict[str, dict[int, Image.Image]] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    model_id: str | None = None
    prefix_ok: bool = True


def evaluate_image(codec, metrics: Metrics, img: BenchImage, ref: Reference, modes: list[DecodeMode]) -> ImageResult:
    """Encode once, then decode every level prefix in every mode and score it."""
    data = codec.encode(img.image)
    info = codec.info(data)
    levels = [entry.index for entry in info.levels]
    prefixes = {level: codec.truncate(data, level=level) for level in levels}
    result = ImageResult(data, prefixes, model_id=getattr(info, "model_id", None))
    result.prefix_ok = all(data.startswith(p) for p in prefixes.values()) and prefixes[levels[-1]] == data
    for mode in modes:
        result.decoded[mode.name] = {}
        for level, prefix in prefixes.items():
            decoded = codec.decode(prefix, samples=1, seed=mode.seed, spread=mode.spread)[0]
            result.decoded[mode.name][level] = decoded
            result.rows.append({
                "image": img.name,
                "mode": mode.name,
                "level": level,
                "bytes": len(prefix),
                "bpp": len(prefix) * 8 / img.pixels,
                **metrics.compare(ref, decoded),
            })
    return result
