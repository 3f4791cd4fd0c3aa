"""The probability model the range coder uses, in exact integer arithmetic (numpy only).

Encoder and decoder must derive bit-identical probabilities on any machine and
thread count; float convolutions do not promise that (summation order
varies). Here every weight, bias and activation of ``h_s`` and of the
level-causal context network is an integer in fixed point, and convolutions
run in float64 on integer values whose partial sums stay below 2**53, so every
result is exact whatever the order of summation (BLAS blocking, FMA, threads).
Activations are rescaled with floor() after each layer and kept within
+-2**ACTIVATION_LIMIT_BITS fixed-point units; :func:`_check_bound` proves at
load time that no partial sum can leave the exact range.

This module is the one home of the probability model: the fixed-point layers,
the banded evaluation (bounded memory, identical integers), the Gaussian scale
table and its index, and the integer frequency table of ``z``. The codec asks
it one question, :meth:`ProbabilityModel.level_parameters`: the (means,
scales) of level ``l`` given ``z`` and the levels before ``l``.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping

import numpy as np

from .config import ModelConfig

ACTIVATION_LIMIT_BITS = 20
EXACT_LIMIT = 2.0**52

Z_BOUND = 64
"""z symbols are clamped to [-Z_BOUND, Z_BOUND]."""
Z_FREQUENCY_BITS = 16
"""Each row of the z frequency table sums to 2**Z_FREQUENCY_BITS."""

SCALE_MIN = 0.11
"""Smallest Gaussian scale of the latent prior (as in CompressAI)."""
SCALE_MAX = 64.0
SCALE_STEP_SHIFT = 2
"""A scale-table step is 2**SCALE_STEP_SHIFT units of the fixed-point log-scale (1/64 in ln)."""

STACKED_ROWS = 160
"""Rows of one matrix product in :func:`conv2d`: taps are stacked until about this many (9 taps of
16 outputs, as the per-level layers have, make one product)."""

BAND_POSITIONS = 8192
"""Latent positions per band. The 3x3 convolutions read one row of context on
each side, so working memory is set by the band, not by the image size."""

HYPER_SYNTHESIS = (("h_s.0", "transposed", 2), ("h_s.2", "transposed", 2), ("h_s.4", "conv", 1))
"""The layers of h_s (state-dict prefix, kind, stride), ReLU between them: conv + ReLU only,
so they can be evaluated exactly. The training network builds the same stack."""


# -- tables -------------------------------------------------------------------------------
def scale_table(config: ModelConfig) -> tuple[np.ndarray, int]:
    """Bin centres of the log-scale grid from SCALE_MIN to SCALE_MAX, and the grid's offset."""
    unit = 2.0**config.activation_bits
    offset = round(math.log(SCALE_MIN) * unit)
    step = 2**SCALE_STEP_SHIFT
    count = math.ceil((math.log(SCALE_MAX) * unit - offset) / step) + 1
    centres = np.exp((offset + (np.arange(count) + 0.5) * step) / unit)
    return np.maximum(centres, SCALE_MIN), offset


def frequencies_from_pmf(pmf: np.ndarray) -> np.ndarray:
    """Integer frequencies (rows summing to 2**Z_FREQUENCY_BITS) of per-channel probabilities
    over [-Z_BOUND, Z_BOUND]. Every symbol keeps a frequency of at least 1, so any clamped value is
    codable; the rounding remainder goes to each row's most likely symbol."""
    pmf = np.asarray(pmf, dtype=np.float64)
    pmf = pmf / pmf.sum(axis=1, keepdims=True)
    total = 2**Z_FREQUENCY_BITS
    freq = np.floor(pmf * (total - pmf.shape[1])).astype(np.int64) + 1
    freq[np.arange(pmf.shape[0]), pmf.argmax(axis=1)] += total - freq.sum(axis=1)
    return freq


def z_symbols(z: np.ndarray) -> np.ndarray:
    """Range-coder symbols (C, h*w) of integer z (C, h, w): 0 .. 2*Z_BOUND."""
    return (np.asarray(z, dtype=np.int32) + Z_BOUND).reshape(z.shape[0], -1)


def z_from_symbols(symbols: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Inverse of :func:`z_symbols`: integer z (C, rows, cols)."""
    return (np.asarray(symbols, dtype=np.int32) - Z_BOUND).reshape(-1, rows, cols)


# -- BLAS threads ---------------------------------------------------------------------------
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """numpy's BLAS on one thread while the block runs, the caller's setting restored after.

    The products here are small (16 rows): BLAS threads gain nothing on an idle machine and spin
    against other work on a busy one (a Kodak image's levels took 1.2 s instead of 0.63 s with
    two other processes running). Parallel work comes from the codec's own workers. Nesting and
    concurrent use are counted: the first entry limits, the last exit restores. The results are
    exact either way; only the time changes."""
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            from threadpoolctl import threadpool_limits

            _blas_limiter = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


# -- exact convolutions ---------------------------------------------------------------------
def conv2d(x: np.ndarray, weight: np.ndarray, stride: int = 1, padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Convolution (cross-correlation, as torch) of (C, H, W) by (O, C, kh, kw), zero padded.

    One matrix product per kernel offset: with integer operands every product and
    partial sum is exact, so the result does not depend on BLAS or on the order.
    """
    o, c, kh, kw = weight.shape
    ph, pw = padding
    _, h, w = x.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    taps = np.ascontiguousarray(weight.transpose(2, 3, 0, 1), dtype=np.float64)  # (kh, kw, O, C)
    if stride == 1:
        # Row-major padded input, one spare row: the tap (i, j) of every output position is the
        # input at a constant offset i * wp + j. Taps are stacked on the output side, so a group
        # of taps is one tall matrix product (far better BLAS use than one product of O rows per
        # tap when O is small), and each tap's rows are then added at their offset. Outputs are
        # computed on the padded width and the kw - 1 wrap-around columns dropped.
        flat = np.zeros((c, hp + 1, wp), dtype=np.float64)
        flat[:, ph : ph + h, pw : pw + w] = x
        flat = flat.reshape(c, -1)
        n = ho * wp
        stacked = taps.reshape(kh * kw * o, c)
        group = max(1, min(kh * kw, STACKED_ROWS // o))
        out = np.zeros((o, n), dtype=np.float64)
        for first in range(0, kh * kw, group):
            offsets = [i * wp + j for i, j in (divmod(t, kw) for t in range(first, min(first + group, kh * kw)))]
            lo, hi = offsets[0], offsets[-1] + n
            part = stacked[first * o : (first + len(offsets)) * o] @ flat[:, lo:hi]
            for k, offset in enumerate(offsets):
                out += part[k * o : (k + 1) * o, offset - lo : offset - lo + n]
        return out.reshape(o, ho, wp)[:, :, :wo]
    if ph or pw:
        x = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((o, ho * wo), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
            out += taps[i, j] @ np.ascontiguousarray(patch).reshape(c, -1)
    return out.reshape(o, ho, wo)


def conv_transpose2d(x: np.ndarray, weight: np.ndarray, stride: int, padding: int, output_padding: int) -> np.ndarray:
    """Transposed convolution (as torch) of (C, H, W) by (C, O, kh, kw)."""
    c, o, kh, kw = weight.shape
    _, h, w = x.shape
    ho = (h - 1) * stride - 2 * padding + kh + output_padding
    wo = (w - 1) * stride - 2 * padding + kw + output_padding
    full = np.zeros((o, max((h - 1) * stride + kh, padding + ho), max((w - 1) * stride + kw, padding + wo)))
    flat = np.ascontiguousarray(x).reshape(c, -1)
    taps = np.ascontiguousarray(weight.transpose(2, 3, 1, 0))  # (kh, kw, O, C)
    for i in range(kh):
        for j in range(kw):
            part = (taps[i, j] @ flat).reshape(o, h, w)
            full[:, i : i + stride * (h - 1) + 1 : stride, j : j + stride * (w - 1) + 1 : stride] += part
    return full[:, padding : padding + ho, padding : padding + wo]


def _quantize(values: np.ndarray, bits: int) -> np.ndarray:
    # float32 * 2**bits is exact in float64 and rint is exact: the same integers everywhere.
    return np.rint(np.asarray(values, dtype=np.float32).astype(np.float64) * 2.0**bits)


def _check_bound(name: str, weight: np.ndarray, fan_in: int, bias: np.ndarray) -> None:
    worst = float(np.abs(weight).max(initial=0.0)) * fan_in * 2.0**ACTIVATION_LIMIT_BITS
    worst += float(np.abs(bias).max(initial=0.0))
    if worst >= EXACT_LIMIT:
        raise ValueError(f"{name}: weights too large for exact fixed-point evaluation")


@dataclass(frozen=True)
class ExactLayer:
    """A conv or transposed conv with integer weights (W fractional bits) and bias (A+W bits)."""

    weight: np.ndarray
    bias: np.ndarray
    transposed: bool
    stride: int
    relu: bool

    def accumulate(self, x: np.ndarray, row_padding: bool = True) -> np.ndarray:
        k = self.weight.shape[-1] // 2
        if self.transposed:
            acc = conv_transpose2d(x, self.weight, self.stride, k, self.stride - 1)
        else:
            acc = conv2d(x, self.weight, self.stride, (k if row_padding else 0, k))
        return acc + self.bias[:, None, None]


@dataclass(frozen=True)
class LevelLayers:
    """The integer slices of the context network that give one level's parameters."""

    causal_w: np.ndarray  # (K, level*G, 3, 3): sees only earlier levels
    causal_b: np.ndarray
    mid_w: np.ndarray  # (K, K)
    mid_b: np.ndarray
    out_w: np.ndarray  # (2G, K): G means then G log-scales
    out_b: np.ndarray


class ProbabilityModel:
    """Hyper features and per-level Gaussian (mean, scale) in exact fixed point.

    Built from the float weights of a model (any mapping of state-dict keys to
    arrays), its scale table and z frequency table.
    """

    def __init__(self, config: ModelConfig, state: Mapping[str, np.ndarray],
                 z_frequencies: np.ndarray, scales: np.ndarray, scale_offset: int):
        self.config = config
        self.a_bits, self.w_bits = config.activation_bits, config.weight_bits
        self.unit = 2.0**self.a_bits
        self.z_frequencies = np.asarray(z_frequencies, dtype=np.int64)
        self.scales = np.asarray(scales, dtype=np.float64)
        self.scale_offset = int(scale_offset)
        a, w = self.a_bits, self.w_bits
        self.hyper_layers = []
        for index, (prefix, kind, stride) in enumerate(HYPER_SYNTHESIS):
            weight = _quantize(state[f"{prefix}.weight"], w)
            bias = _quantize(state[f"{prefix}.bias"], a + w)
            transposed = kind == "transposed"
            fan_in = (weight.shape[0] if transposed else weight.shape[1]) * weight.shape[2] * weight.shape[3]
            _check_bound(prefix, weight, fan_in, bias)
            self.hyper_layers.append(ExactLayer(weight, bias, transposed, stride, index < len(HYPER_SYNTHESIS) - 1))
        self.level_layers = [self._level_layers(state, level) for level in range(config.levels)]
        self.band_halo = max(self.hyper_layers[-1].weight.shape[-1], self.level_layers[-1].causal_w.shape[-1]) // 2
        """Rows of context a band needs on each side (the 3x3 kernels reach one row)."""

    def _level_layers(self, state: Mapping[str, np.ndarray], level: int) -> LevelLayers:
        g, k = self.config.group_size, self.config.context_per_level
        a, w = self.a_bits, self.w_bits
        hid, out = slice(level * k, (level + 1) * k), slice(level * 2 * g, (level + 1) * 2 * g)
        causal_w = _quantize(np.asarray(state["context_causal.weight"])[hid, : level * g], w)
        causal_b = _quantize(np.asarray(state["context_causal.bias"])[hid], a + w)
        if level:
            _check_bound("context", causal_w, causal_w[0].size, causal_b)
        mid_w = _quantize(np.asarray(state["context_mid.weight"])[hid, :, 0, 0], w)
        mid_b = _quantize(np.asarray(state["context_mid.bias"])[hid], a + w)
        out_w = _quantize(np.asarray(state["context_out.weight"])[out, :, 0, 0], w)
        out_b = _quantize(np.asarray(state["context_out.bias"])[out], a + w)
        for name, (wt, b) in (("context_mid", (mid_w, mid_b)), ("context_out", (out_w, out_b))):
            _check_bound(name, wt, wt.shape[1], b)
        return LevelLayers(causal_w, causal_b, mid_w, mid_b, out_w, out_b)

    def _rescale(self, acc: np.ndarray, relu: bool) -> np.ndarray:
        out = np.floor(acc / 2.0**self.w_bits)
        limit = 2.0**ACTIVATION_LIMIT_BITS
        return np.clip(out, 0.0 if relu else -limit, limit, out=out)

    # -- hyper features --------------------------------------------------------------
    def hyper_base(self, z: np.ndarray) -> np.ndarray:
        """h_s up to (not including) its last layer, from integer z (C, h, w).

        Returned as float32: every value is an integer of at most
        ACTIVATION_LIMIT_BITS bits, so float32 holds it exactly in half the
        memory. The last layer is applied per level and per band of rows by
        :meth:`level_parameters`, so the full hyper features never exist for
        the whole image at once.
        """
        x = np.asarray(z, dtype=np.float64) * self.unit
        for layer in self.hyper_layers[:-1]:
            x = self._rescale(layer.accumulate(x), layer.relu)
        return x.astype(np.float32)

    def hyper(self, z: np.ndarray) -> np.ndarray:
        """All hyper features (fixed point) from integer z, over the whole image."""
        last = self.hyper_layers[-1]
        return self._rescale(last.accumulate(self.hyper_base(z).astype(np.float64)), last.relu)

    # -- per-level parameters --------------------------------------------------------
    def level_parameters_fixed(self, previous: np.ndarray, hyper: np.ndarray, level: int):
        """Fixed-point (mean, log-scale) of ``level`` over the whole image, given levels < ``level``
        (G*level, h, w) and all hyper features: the reference the banded path must equal."""
        k = self.config.context_per_level
        context = None
        if level:
            causal_w = self.level_layers[level].causal_w
            context = conv2d(np.asarray(previous, dtype=np.float64) * self.unit, causal_w, 1, (1, 1))
        return self._level_tail(hyper[level * k : (level + 1) * k].astype(np.float64), context, level)

    def _band_fixed(self, previous: np.ndarray, base: np.ndarray, level: int):
        """Fixed-point (mean, log-scale) of a band of rows; ``previous`` and ``base`` carry
        ``band_halo`` extra rows on each side (zero rows past the image edge, exactly what the
        whole-image convolutions' zero padding reads), so the integers are identical."""
        k = self.config.context_per_level
        last = self.hyper_layers[-1]
        rows = slice(level * k, (level + 1) * k)
        band_layer = ExactLayer(last.weight[rows], last.bias[rows], False, 1, last.relu)
        hyper = self._rescale(band_layer.accumulate(base.astype(np.float64), row_padding=False), last.relu)
        context = None
        if level:
            causal_w = self.level_layers[level].causal_w
            context = conv2d(previous.astype(np.float64) * self.unit, causal_w, 1, (0, causal_w.shape[-1] // 2))
        return self._level_tail(hyper, context, level)

    def _level_tail(self, hyper: np.ndarray, context: np.ndarray | None, level: int):
        """Hyper features plus causal context through the 1x1 layers: (mean, log-scale)."""
        lw = self.level_layers[level]
        acc = hyper * 2.0**self.w_bits + lw.causal_b[:, None, None]
        if context is not None:
            acc += context
        h = self._rescale(acc, relu=True)
        _, rows, cols = h.shape
        h = self._rescale((lw.mid_w @ h.reshape(h.shape[0], -1)) + lw.mid_b[:, None], relu=True)
        params = self._rescale((lw.out_w @ h) + lw.out_b[:, None], relu=False).reshape(-1, rows, cols)
        g = self.config.group_size
        return params[:g], params[g:]

    def scale_of(self, log_scale_fixed: np.ndarray) -> np.ndarray:
        """Gaussian scales of fixed-point log-scales: the scale table entry of their bin."""
        index = np.floor((log_scale_fixed - self.scale_offset) / 2**SCALE_STEP_SHIFT)
        return self.scales[np.clip(index, 0, len(self.scales) - 1).astype(np.int64)]

    def level_parameters(self, y: np.ndarray, base: np.ndarray, level: int,
                         band_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(means, scales) of ``level`` as (G, h, w) float64 arrays, exactly reproducible.

        ``y`` (C, h, w) integer latents holding at least the levels before
        ``level``; ``base`` is :meth:`hyper_base` of z. The work runs in bands of
        ``band_rows`` rows (default: about BAND_POSITIONS positions); every band
        gives the same integers as the whole image would.
        """
        g = self.config.group_size
        _, h, w = base.shape
        rows = band_rows or max(1, BAND_POSITIONS // w)
        halo = self.band_halo
        previous = y[: level * g]
        means, scales = np.empty((g, h, w)), np.empty((g, h, w))
        for r0 in range(0, h, rows):
            r1 = min(r0 + rows, h)
            mean_fixed, log_scale_fixed = self._band_fixed(
                _rows_with_halo(previous, r0, r1, halo), _rows_with_halo(base, r0, r1, halo), level)
            means[:, r0:r1] = mean_fixed / self.unit
            scales[:, r0:r1] = self.scale_of(log_scale_fixed)
        return means, scales


def _rows_with_halo(x: np.ndarray, r0: int, r1: int, halo: int) -> np.ndarray:
    """Rows r0 - halo .. r1 + halo of (C, h, w) ``x``; zero rows past the edges."""
    top, bottom = max(r0 - halo, 0), min(r1 + halo, x.shape[1])
    band = x[:, top:bottom]
    missing_top, missing_bottom = halo - (r0 - top), halo - (bottom - r1)
    if missing_top or missing_bottom:
        band = np.pad(band, ((0, 0), (missing_top, missing_bottom), (0, 0)))
    return band
