"""Exact evaluation of the probability model: h_s and the level-causal context network.

Encoder and decoder must derive bit-identical probabilities, on any machine,
thread count or device; float convolutions do not promise that (summation
order varies). Here every weight, bias and activation is an integer in fixed
point, and convolutions run in float64 on integer values whose partial sums
stay below 2**53, so every result is exact whatever the order of summation.
Activations are rescaled with floor() after each layer and kept within
+-2**ACTIVATION_LIMIT_BITS fixed-point units; :func:`_check_bound` proves at load
time that no partial sum can leave the exact range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .sic import SICModel

ACTIVATION_LIMIT_BITS = 20
EXACT_LIMIT = 2.0**52


@dataclass(frozen=True)
class ExactLayer:
    """A conv or transposed conv with integer weights (W fractional bits)."""

    weight: torch.Tensor  # float64, integer valued
    bias: torch.Tensor  # float64, integer valued, A+W fractional bits
    apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    relu: bool


def _quantize(tensor: torch.Tensor, bits: int) -> torch.Tensor:
    # float32 * 2**bits is exact and round() is exact: the same integers everywhere.
    return torch.round(tensor.detach().double() * 2.0**bits)


def _check_bound(name: str, weight: torch.Tensor, fan_in: int, bias: torch.Tensor) -> None:
    worst = float(weight.abs().max()) * fan_in * 2.0**ACTIVATION_LIMIT_BITS + float(bias.abs().max())
    if worst >= EXACT_LIMIT:
        raise ValueError(f"{name}: weights too large for exact fixed-point evaluation")


def _exact_layer(module: nn.Module, a_bits: int, w_bits: int, relu: bool) -> ExactLayer:
    weight = _quantize(module.weight, w_bits)
    bias = _quantize(module.bias, a_bits + w_bits)
    stride, padding = module.stride, module.padding
    if isinstance(module, nn.ConvTranspose2d):
        out_pad = module.output_padding
        fan_in = weight.shape[0] * weight.shape[2] * weight.shape[3]

        def apply(x, w):
            return F.conv_transpose2d(x, w, None, stride, padding, out_pad)
    else:
        fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]

        def apply(x, w):
            return F.conv2d(x, w, None, stride, padding)

    _check_bound(type(module).__name__, weight, fan_in, bias)
    return ExactLayer(weight, bias, apply, relu)


class FixedPointEntropyModel:
    """Hyper features and per-level (mean, log-scale) as exact fixed-point integers.

    Values returned carry ``activation_bits`` fractional bits: divide by
    ``self.unit`` for the real number.
    """

    def __init__(self, model: SICModel):
        cfg = model.config
        self.config = cfg
        self.a_bits, self.w_bits = cfg.activation_bits, cfg.weight_bits
        self.unit = 2.0**self.a_bits
        a, w = self.a_bits, self.w_bits
        convs = [m for m in model.h_s if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        if isinstance(convs[-1], nn.ConvTranspose2d) or convs[-1].stride != (1, 1):
            raise ValueError("h_s must end in a stride-1 conv: it is evaluated per band of rows")
        self.hyper_layers = [_exact_layer(m, a, w, relu=i < len(convs) - 1) for i, m in enumerate(convs)]
        self.level_layers = [self._level_layers(model, level) for level in range(cfg.levels)]

    def _level_layers(self, model: SICModel, level: int) -> tuple:
        lw = model.level_weights(level)
        a, w = self.a_bits, self.w_bits
        causal_w = _quantize(lw.causal_w, w)
        causal_b = _quantize(lw.causal_b, a + w)
        if level:
            _check_bound("context", causal_w, causal_w[0].numel(), causal_b)
        mid = (_quantize(lw.mid_w, w), _quantize(lw.mid_b, a + w))
        out = (_quantize(lw.out_w, w), _quantize(lw.out_b, a + w))
        for name, (wt, b) in (("context_mid", mid), ("context_out", out)):
            _check_bound(name, wt, wt[0].numel(), b)
        return causal_w, causal_b, mid, out

    def _rescale(self, acc: torch.Tensor, relu: bool) -> torch.Tensor:
        out = torch.floor(acc / 2.0**self.w_bits)
        limit = 2.0**ACTIVATION_LIMIT_BITS
        return out.clamp(0.0 if relu else -limit, limit)

    def _run(self, layer: ExactLayer, x: torch.Tensor) -> torch.Tensor:
        acc = layer.apply(x, layer.weight) + layer.bias.view(1, -1, 1, 1)
        return self._rescale(acc, layer.relu)

    def hyper_base(self, z: torch.Tensor) -> torch.Tensor:
        """h_s up to (not including) its last layer, from integer z.

        Returned as float32: every value is an integer of at most
        ACTIVATION_LIMIT_BITS bits, so float32 holds it exactly in half the
        memory. The last layer is applied per level and per band of rows by
        :meth:`level_parameters_band`, so the 256-channel hyper features never
        exist for the whole image at once.
        """
        x = z.double() * self.unit
        for layer in self.hyper_layers[:-1]:
            x = self._run(layer, x)
        return x.float()

    def hyper(self, z: torch.Tensor) -> torch.Tensor:
        """All hyper features from integer z (any integer dtype or integer-valued float)."""
        return self._run(self.hyper_layers[-1], self.hyper_base(z).double())

    def level_parameters(self, previous: torch.Tensor, hyper: torch.Tensor, level: int):
        """Fixed-point (mean, log-scale) of ``level`` from integer levels < ``level``,
        over the whole image, given all hyper features (the reference the banded path must equal)."""
        k = self.config.context_per_level
        context = None
        if level:
            context = F.conv2d(previous.double() * self.unit, self.level_layers[level][0],
                               padding=self.level_layers[level][0].shape[-1] // 2)
        return self._level_tail(hyper[:, level * k : (level + 1) * k].double(), context, level)

    @property
    def band_halo(self) -> int:
        """Rows of context a band needs on each side (the 3x3 kernels reach one row)."""
        return max(self.hyper_layers[-1].weight.shape[-1], self.level_layers[-1][0].shape[-1]) // 2

    def level_parameters_band(self, previous: torch.Tensor, base: torch.Tensor, level: int):
        """(mean, log-scale) of ``level`` for a band of rows.

        ``previous`` (levels < ``level``) and ``base`` (from :meth:`hyper_base`)
        carry ``band_halo`` extra rows above and below the band, zero rows
        where the band touches the image edge: exactly what the whole-image
        convolutions' zero padding would read, so the integers are identical.
        """
        k = self.config.context_per_level
        last = self.hyper_layers[-1]
        pad = (0, last.weight.shape[-1] // 2)
        rows = slice(level * k, (level + 1) * k)
        hyper_acc = F.conv2d(base.double(), last.weight[rows], None, 1, pad) + last.bias[rows].view(1, -1, 1, 1)
        hyper = self._rescale(hyper_acc, last.relu)
        context = None
        if level:
            causal_w = self.level_layers[level][0]
            context = F.conv2d(previous.double() * self.unit, causal_w, padding=(0, causal_w.shape[-1] // 2))
        return self._level_tail(hyper, context, level)

    def _level_tail(self, hyper: torch.Tensor, context: torch.Tensor | None, level: int):
        """Hyper features plus causal context through the 1x1 layers: (mean, log-scale)."""
        _, causal_b, (mid_w, mid_b), (out_w, out_b) = self.level_layers[level]
        acc = hyper * 2.0**self.w_bits + causal_b.view(1, -1, 1, 1)
        if context is not None:
            acc = acc + context
        h = self._rescale(acc, relu=True)
        h = self._rescale(F.conv2d(h, mid_w) + mid_b.view(1, -1, 1, 1), relu=True)
        params = self._rescale(F.conv2d(h, out_w) + out_b.view(1, -1, 1, 1), relu=False)
        g = self.config.group_size
        return params[:, :g], params[:, g:]
