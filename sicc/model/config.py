"""Model hyper-parameters: one frozen value that travels inside every weights file."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the progressive SIC model.

    The latent ``y`` has ``latent`` channels at 1/16 of the image size, cut into
    ``levels`` equal channel groups; each group is one progressive level.
    """

    hidden: int = 96
    latent: int = 128
    levels: int = 16
    hyper: int = 64
    context_per_level: int = 16
    activation_bits: int = 8  # fractional bits of the fixed-point entropy-parameter path
    weight_bits: int = 12

    def __post_init__(self) -> None:
        for name, (low, high) in FIELD_RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name}={value!r} is outside {low}..{high}")
        if self.latent % self.levels:
            raise ValueError(f"latent={self.latent} must be a multiple of levels={self.levels}")

    @property
    def group_size(self) -> int:
        return self.latent // self.levels

    @property
    def context_hidden(self) -> int:
        return self.context_per_level * self.levels

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, int], strict: bool = False) -> "ModelConfig":
        """The config of ``data``; ``strict`` (a weights file): every field present, each an integer,
        nothing else (ValueError names the field)."""
        if strict:
            if not isinstance(data, dict):
                raise ValueError("the config is not a JSON object")
            fields = set(cls.__dataclass_fields__)
            odd = sorted(fields ^ set(data))
            if odd:
                raise ValueError(f"field {odd[0]!r} is {'missing' if odd[0] in fields else 'unknown'}")
            for name, value in data.items():
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError(f"{name}={value!r} is not an integer")
            return cls(**data)
        known = {k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


FIELD_RANGES = {"hidden": (1, 1024), "latent": (1, 1024), "levels": (1, 255), "hyper": (1, 1024),
                "context_per_level": (1, 256), "activation_bits": (1, 16), "weight_bits": (1, 16)}
"""The values a config may take: the SIC header holds the level count in a byte; the fixed-point
path of the probability model is proven exact at load time for bit widths in this range."""

TINY = ModelConfig(hidden=8, latent=32, levels=16, hyper=8, context_per_level=2)
"""A few-thousand-parameter configuration for tests."""

SAMPLES_SPREAD = 2.0
"""Decode-time detail spread s in y_e = round(mu + s*u), u ~ U(-1, 1), of synonymous samples
(``--samples N`` with N > 1): the paper's value."""

SINGLE_SPREAD = 0.0
"""The spread of a single decode when none is given: the decode that scores best at the levels
users cut to. Measured on the 41 validation photos with the shipped model at levels 1-8 (spread 0,
1 and 2; ``python -m sicc.train spreads``; the README's "Which decode by default"), spread 0 beats
spread 2 on DISTS, LPIPS and PSNR at every level."""

DEFAULT_SPREAD = SAMPLES_SPREAD
"""Kept for callers of earlier versions: the spread of synonymous samples."""


def default_spread(spread: float | None, samples: int) -> float:
    """``spread`` where given; else :data:`SINGLE_SPREAD` for one decode and :data:`SAMPLES_SPREAD`
    for several (so ``--samples 4`` still gives four different, equally plausible pictures)."""
    if spread is not None:
        return spread
    return SINGLE_SPREAD if samples == 1 else SAMPLES_SPREAD
