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

**Inner tables** (``sicc-weights-5``): the file may also carry two float32 tables of shape
``(levels, layers, hidden)`` (state keys :data:`INNER_SCALE_KEY`, :data:`INNER_SHIFT_KEY`) that tell
g_s's hidden layers the level too. Its g_s graph then has two more float32 inputs,
:data:`GAIN_INPUT` and :data:`SHIFT_INPUT`, each ``(layers, hidden)``; the graph multiplies the
output of its ``j``-th hidden layer (the ``j``-th inverse GDN) by row ``j`` of the gain and adds row
``j`` of the shift, per channel. For a decode of ``L`` levels the runtime feeds

    gain = 1 + inner_scale[L-1]        shift = inner_shift[L-1]     (float32)

and for a decode of no level (L = 0) a gain of ones and a shift of zeros (the identity). The input
tables are then present as well (a file has the inner tables only together with them).

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
INNER_SCALE_KEY = "level_film.inner_scale"
INNER_SHIFT_KEY = "level_film.inner_shift"
INNER_KEYS = (INNER_SCALE_KEY, INNER_SHIFT_KEY)
"""The state keys of the inner tables (g_s's hidden layers told the level)."""
GAIN_INPUT = "film_gain"
SHIFT_INPUT = "film_shift"
"""The names of the g_s graph's inputs that take the inner tables' rows (weights with inner tables)."""
MAX_INNER_LAYERS = 8
"""The most hidden layers inner tables may address."""


@dataclass(frozen=True)
class LevelFilm:
    """The tables of one weights file: ``gain = 1 + scale`` and ``shift``, (levels, latent) float32,
    and where the file has them the inner ones, ``inner_gain = 1 + inner_scale`` and ``inner_shift``,
    (levels, layers, hidden) float32."""

    gain: np.ndarray
    shift: np.ndarray
    inner_gain: np.ndarray | None = None
    inner_shift: np.ndarray | None = None

    @property
    def has_inner(self) -> bool:
        return self.inner_gain is not None

    def inner_rows(self, level: int) -> dict[str, np.ndarray]:
        """The g_s graph's extra inputs for a decode of ``level`` levels ({} without inner tables):
        the level's rows, or the identity for level 0."""
        if self.inner_gain is None:
            return {}
        if level <= 0:
            return {GAIN_INPUT: np.ones(self.inner_gain.shape[1:], np.float32),
                    SHIFT_INPUT: np.zeros(self.inner_shift.shape[1:], np.float32)}
        return {GAIN_INPUT: self.inner_gain[level - 1], SHIFT_INPUT: self.inner_shift[level - 1]}

    def apply(self, x: np.ndarray, level: int) -> np.ndarray:
        """``x`` (1, latent, h, w) float32, decoded from ``level`` levels, as g_s is to see it."""
        if level <= 0:
            return x
        gain = self.gain[level - 1][None, :, None, None]
        shift = self.shift[level - 1][None, :, None, None]
        return np.asarray(x, dtype=np.float32) * gain + shift


def has_tables(state: Mapping[str, object]) -> bool:
    """Whether a state (network weights by key) holds either table (of the input ones)."""
    return any(key in state for key in KEYS)


def has_inner_tables(state: Mapping[str, object]) -> bool:
    """Whether a state holds either inner table."""
    return any(key in state for key in INNER_KEYS)


def inner_layers(state: Mapping[str, np.ndarray]) -> int:
    """How many hidden layers the (checked) inner tables of ``state`` address (0: none)."""
    return int(state[INNER_SCALE_KEY].shape[1]) if INNER_SCALE_KEY in state else 0


def _pair_problem(state: Mapping[str, np.ndarray], keys: tuple[str, str], shape: tuple[int, ...],
                  what: str) -> str | None:
    present = [key for key in keys if key in state]
    if len(present) != len(keys):
        missing = next(key for key in keys if key not in state)
        return f"it has {present[0]} but not {missing}"
    for key in keys:
        table = state[key]
        if table.dtype != np.float32 or table.shape != shape:
            return f"{key} is {table.dtype} {tuple(table.shape)}, not float32 {shape} ({what})"
        if not np.isfinite(table).all():
            return f"{key} holds values that are not finite numbers"
    return None


def table_problem(config: ModelConfig, state: Mapping[str, np.ndarray]) -> str | None:
    """Why the tables of ``state`` cannot be used (None: they can, or there are none): of each pair
    both or neither, the input ones float32 (levels, latent), the inner ones float32 (levels, layers,
    hidden) with 1..MAX_INNER_LAYERS layers and only beside the input ones, all finite."""
    if has_inner_tables(state):
        if not has_tables(state):
            return f"it has {INNER_SCALE_KEY} but not {SCALE_KEY}"
        scale = state.get(INNER_SCALE_KEY)
        layers = scale.shape[1] if scale is not None and scale.ndim == 3 else 0
        if scale is not None and not 1 <= layers <= MAX_INNER_LAYERS:
            return f"{INNER_SCALE_KEY} has shape {tuple(scale.shape)}, not (levels, 1..{MAX_INNER_LAYERS}, hidden)"
        problem = _pair_problem(state, INNER_KEYS, (config.levels, layers, config.hidden), "levels, layers, hidden")
        if problem:
            return problem
    if not has_tables(state):
        return None
    return _pair_problem(state, KEYS, (config.levels, config.latent), "levels, latent")


def level_film(state: Mapping[str, np.ndarray]) -> LevelFilm | None:
    """The tables of a (checked) state, or None when it has none."""
    if not has_tables(state):
        return None
    scale = np.ascontiguousarray(state[SCALE_KEY], dtype=np.float32)
    shift = np.ascontiguousarray(state[SHIFT_KEY], dtype=np.float32)
    if not has_inner_tables(state):
        return LevelFilm(gain=np.float32(1.0) + scale, shift=shift)
    inner_scale = np.ascontiguousarray(state[INNER_SCALE_KEY], dtype=np.float32)
    inner_shift = np.ascontiguousarray(state[INNER_SHIFT_KEY], dtype=np.float32)
    return LevelFilm(gain=np.float32(1.0) + scale, shift=shift,
                     inner_gain=np.float32(1.0) + inner_scale, inner_shift=inner_shift)


def film_transform(g_s: Callable[..., np.ndarray], film: LevelFilm | None,
                   level: int) -> Callable[[np.ndarray], np.ndarray]:
    """g_s of a latent decoded from ``level`` levels: ``g_s`` itself without tables or for level 0,
    else g_s of each (1, latent, h, w) tile scaled and shifted by the level's row. With inner tables,
    ``g_s(x, feeds)`` is also given the level's inner rows (:meth:`LevelFilm.inner_rows`), for level 0
    too."""
    if film is None or (level <= 0 and not film.has_inner):
        return g_s
    if not film.has_inner:
        return lambda x: g_s(film.apply(x, level))
    feeds = film.inner_rows(level)
    return lambda x: g_s(film.apply(x, level), feeds)
