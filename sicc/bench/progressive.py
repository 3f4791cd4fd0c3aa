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


def estimated_bits(codec, image) -> dict:
    """The float model's own estimate of the bits of z and of each level (for overhead figures):
    the runtime's integer latents, scored by the torch network of the same weights."""
    import numpy as np
    import torch

    from ..image_io import load_rgb
    from ..model.probability import z_symbols
    from ..train.export import build_model
    from ..train.network import gaussian_likelihood, scales_from_log

    rgb = load_rgb(image)
    z_int, y_int = codec.analyse(rgb.pixels)
    freq = codec.weights.z_frequencies
    p = freq[np.arange(z_int.shape[0])[:, None], z_symbols(z_int)]
    z_bits = float(-np.log2(p / freq.sum(axis=1, keepdims=True)).sum())
    model = build_model(codec.weights)
    with torch.no_grad():
        hyper = model.h_s(torch.from_numpy(z_int)[None].float())
        y = torch.from_numpy(y_int)[None].float()
        means, log_scales = model.entropy_parameters(y, hyper)
        bits = -torch.log2(gaussian_likelihood(y, means, scales_from_log(log_scales)))
    per_level = bits[0].reshape(codec.config.levels, -1).sum(dim=1).double().tolist()
    return {"z_bits": z_bits, "level_bits": per_level, "pixels": int(rgb.pixels.shape[0] * rgb.pixels.shape[1])}


@dataclass
class ImageResult:
    """Per-image outputs that later stages (synonymy) reuse instead of decoding again."""

    data: bytes
    prefixes: dict[int, bytes]
    decoded: dict[str, dict[int, Image.Image]] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    model_id: str | None = None
    prefix_ok: bool = True


def file_levels(data: bytes) -> tuple[list[int], str | None]:
    """Level indices present in a SIC file and its model id (file structure needs no model)."""
    import sicc

    info = sicc.info(data)
    model_id = getattr(info, "model_id", None)
    return [entry.index for entry in info.levels], model_id.hex() if isinstance(model_id, bytes) else model_id


def truncate(data: bytes, level: int) -> bytes:
    """The real file prefix holding levels 1..level."""
    import sicc

    return sicc.truncate(data, level=level)


def evaluate_image(codec, metrics: Metrics, img: BenchImage, ref: Reference, modes: list[DecodeMode],
                   only_levels: tuple[int, ...] | None = None) -> ImageResult:
    """Encode once, then decode every level prefix (or only ``only_levels``) in every mode and score it."""
    data = codec.encode(img.image)
    estimate = estimated_bits(codec, img.image)
    levels, model_id = file_levels(data)
    prefixes = {level: truncate(data, level) for level in levels if not only_levels or level in only_levels}
    result = ImageResult(data, prefixes, model_id=model_id)
    result.prefix_ok = all(data.startswith(p) for p in prefixes.values()) and truncate(data, levels[-1]) == data
    complete = None  # (image, scores) of the whole file: it decodes the same in every mode, so it is scored once
    for mode in modes:
        result.decoded[mode.name] = {}
        for level, prefix in prefixes.items():
            if level == codec.config.levels and complete is not None:
                decoded, scores = complete
            else:
                decoded = codec.decode(prefix, samples=1, seed=mode.seed, spread=mode.spread)[0]
                scores = metrics.compare(ref, decoded)
                if level == codec.config.levels:
                    complete = decoded, scores
            result.decoded[mode.name][level] = decoded
            result.rows.append({
                "image": img.name,
                "mode": mode.name,
                "level": level,
                "bytes": len(prefix),
                "bpp": len(prefix) * 8 / img.pixels,
                **_estimate_columns(estimate, level, len(prefix), img.pixels),
                **scores,
            })
    return result


def _estimate_columns(estimate: dict, level: int, real_bytes: int, pixels: int) -> dict:
    """The model's own rate estimate for the prefix (z plus levels 1..level) beside the real size.

    ``overhead_pct`` compares the real prefix with that estimate; the real size also
    holds the 32-byte header and 12-13 bytes of framing per chunk.
    """
    est_bits = estimate["z_bits"] + sum(estimate["level_bits"][:level])
    return {
        "est_bpp": est_bits / pixels,
        "overhead_pct": 100.0 * (real_bytes * 8 - est_bits) / est_bits,
    }
