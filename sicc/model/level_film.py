"""g_s told which level it decodes from: a per-level scale and shift of the latent before g_s.

A weights file may carry two float32 tables of shape ``(levels, latent)`` (state keys
:data:`SCALE_KEY` and :data:`SHIFT_KEY`, archive members ``model/level_film.scale`` and
``model/level_film.shift``). A decoder that decodes the first ``L`` levels (1..levels) of a file
gives g_s, instead of the complete integer latent ``y`` (coded levels, then the sampled or mean
ones), the float32 latent

    y' = y * (1 + scale[L-1]) + shift[L-1]        (per latent channel, float32, in this order)

where ``1 + scale`` is computed in float32 first, and each product and sum is rounded to float32
(no fused multiply-add). Without the tables, and for a decode of no level (L = 0), g_s gets ``y``
itself: files of weights without them decode exactly as before. Zero tables are the identity too,
so training starts them at zero (``python -m sicc.train run --level-film``) from the function g_s
already computes.

This module is the runtime's one home of that step: :meth:`sicc.codec.Codec.synthesize` wraps g_s
with :func:`film_transform` (each tile is scaled as it is handed to g_s, so the ONNX graphs and
the tiling are unchanged); ``web/src/level_film.js`` mirrors it, and the training network applies
the same affine (:meth:`sicc.train.network.SICModel.synthesize`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from .config import ModelConfig

SCALE_KEY = "level_film.scale"
SHIFT_KEY = "level_film.shift"
KEYS = (SCALE_KEY, SHIFT_KEY)
"""The state keys of the tables (the weights file stores them as ``model/<key>``, as every network weight)."""


@dataclass(frozen=True)
class LevelFilm:
    """The tables of one weights file: ``gain = 1 + scale`` and ``shift``, (levels, latent) float32."""

    gain: np.ndarray
    shift: np.ndarray

    def apply(self, x: np.ndarray, level: int) -> np.ndarray:
        """``x`` (1, latent, h, w) float32, decoded from ``level`` levels, as g_s is to see it."""
        if level <= 0:
            return x
        gain = self.gain[level - 1][None, :, None, None]
        shift = self.shift[level - 1][None, :, None, None]
        return np.asarray(x, dtype=np.float32) * gain + shift


def has_tables(state: Mapping[str, object]) -> bool:
    """Whether a state (network weights by key) holds either table."""
    return any(key in state for key in KEYS)


def table_problem(config: ModelConfig, state: Mapping[str, np.ndarray]) -> str | None:
    """Why the tables of ``state`` cannot be used (None: they can, or there are none): both or
    neither, each float32 of shape (levels, latent) and finite."""
    present = [key for key in KEYS if key in state]
    if not present:
        return None
    if len(present) != len(KEYS):
        missing = next(key for key in KEYS if key not in state)
        return f"it has {present[0]} but not {missing}"
    shape = (config.levels, config.latent)
    for key in KEYS:
        table = state[key]
        if table.dtype != np.float32 or table.shape != shape:
            return f"{key} is {table.dtype} {tuple(table.shape)}, not float32 {shape} (levels, latent)"
        if not np.isfinite(table).all():
            return f"{key} holds values that are not finite numbers"
    return None


def level_film(state: Mapping[str, np.ndarray]) -> LevelFilm | None:
    """The tables of a (checked) state, or None when it has none."""
    if not has_tables(state):
        return None
    scale = np.ascontiguousarray(state[SCALE_KEY], dtype=np.float32)
    shift = np.ascontiguousarray(state[SHIFT_KEY], dtype=np.float32)
    return LevelFilm(gain=np.float32(1.0) + scale, shift=shift)


def film_transform(g_s: Callable[[np.ndarray], np.ndarray], film: LevelFilm | None,
                   level: int) -> Callable[[np.ndarray], np.ndarray]:
    """g_s of a latent decoded from ``level`` levels: ``g_s`` itself without tables or for level 0,
    else g_s of each (1, latent, h, w) tile scaled and shifted by the level's row."""
    if film is None or level <= 0:
        return g_s
    return lambda x: g_s(film.apply(x, level))
