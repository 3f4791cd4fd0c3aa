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
    def from_dict(cls, data: dict[str, int]) -> "ModelConfig":
        known = {k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


TINY = ModelConfig(hidden=8, latent=32, levels=16, hyper=8, context_per_level=2)
"""A few-thousand-parameter configuration for tests."""

DEFAULT_SPREAD = 2.0
"""Decode-time detail spread s in y_e = round(mu + s*u), u ~ U(-1, 1): the paper's value."""
