"""The progressive SIC network: transforms, hyperprior and level-causal context.

Everything here is differentiable float arithmetic used for training (torch).
The runtime never imports it: it runs the transforms as ONNX graphs exported
from this network (:mod:`sicc.train.export`) and evaluates h_s and the context
network exactly from the same weights (:mod:`sicc.model.probability`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..model.config import ModelConfig
from ..model.level_film import INNER_KEYS as INNER_FILM_KEYS
from ..model.level_film import KEYS as LEVEL_FILM_KEYS
from ..model.probability import SCALE_MIN
from .layers import GDN, LevelCausalConv2d, conv, deconv


class LevelWeights(NamedTuple):
    """The slices of the context network that produce one level's parameters."""

    causal_w: torch.Tensor  # (K, g*G, k, k): sees only earlier levels
    causal_b: torch.Tensor
    mid_w: torch.Tensor  # (K, K, 1, 1)
    mid_b: torch.Tensor
    out_w: torch.Tensor  # (2G, K, 1, 1): G means then G log-scales
    out_b: torch.Tensor


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


class LevelFilm(nn.Module):
    """The level tables of the synthesis side (:mod:`sicc.model.level_film`): per level and latent
    channel a scale and a shift, zero at first (the identity), so g_s learns which level it decodes
    from starting from the function it computes. State keys ``level_film.scale``, ``level_film.shift``."""

    def __init__(self, levels: int, latent: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(levels, latent))
        self.shift = nn.Parameter(torch.zeros(levels, latent))
        self.inner_scale: nn.Parameter | None = None
        self.inner_shift: nn.Parameter | None = None

    def add_inner(self, layers: int, hidden: int) -> None:
        """Zero tables for g_s's inner activations: per level, per inner layer (the output of each
        inverse GDN) and hidden channel, a scale and a shift (state keys ``level_film.inner_scale``,
        ``level_film.inner_shift``, shape (levels, layers, hidden)); zero is the identity."""
        if self.inner_scale is None:
            levels = self.scale.shape[0]
            device = self.scale.device
            self.inner_scale = nn.Parameter(torch.zeros(levels, layers, hidden, device=device))
            self.inner_shift = nn.Parameter(torch.zeros(levels, layers, hidden, device=device))

    def forward(self, latent: torch.Tensor, level: int) -> torch.Tensor:
        """``latent * (1 + scale[level-1]) + shift[level-1]`` per channel, as the runtime computes it."""
        gain = (1 + self.scale[level - 1]).view(1, -1, 1, 1)
        return latent * gain + self.shift[level - 1].view(1, -1, 1, 1)

    def inner(self, x: torch.Tensor, level: int, layer: int) -> torch.Tensor:
        """Inner layer ``layer``'s activations ``x * (1 + inner_scale) + inner_shift`` for ``level``."""
        gain = (1 + self.inner_scale[level - 1, layer]).view(1, -1, 1, 1)
        return x * gain + self.inner_shift[level - 1, layer].view(1, -1, 1, 1)


def is_level_film_key(key: str) -> bool:
    """Whether a state-dict key or parameter name (of a SICModel, or of a SICTrainable: ``model.``
    keys) is one of the level tables (the input tables or the inner ones)."""
    return key.removeprefix("model.") in LEVEL_FILM_KEYS + INNER_FILM_KEYS


def has_inner_film(state) -> bool:
    """Whether a state dict holds the inner level tables."""
    return any(key.removeprefix("model.") in INNER_FILM_KEYS for key in state)


def has_level_film(state) -> bool:
    """Whether a state dict (of a SICModel, or of a SICTrainable: ``model.`` keys) holds the level tables."""
    return any(is_level_film_key(key) for key in state)


class SICModel(nn.Module):
    """Analysis/synthesis transforms plus the entropy-parameter networks (and, with ``level_film``, the
    level tables that tell g_s which level it decodes from)."""

    def __init__(self, config: ModelConfig = ModelConfig(), level_film: bool = False, inner_film: bool = False):
        super().__init__()
        self.config = config
        n, m, zc, k = config.hidden, config.latent, config.hyper, config.context_hidden
        levels = config.levels
        self.g_a = nn.Sequential(
            conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m)
        )
        self.g_s = nn.Sequential(
            deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True),
            deconv(n, n), GDN(n, inverse=True), deconv(n, 3),
        )
        self.h_a = nn.Sequential(
            conv(m, n, 3, 1), nn.LeakyReLU(0.125), conv(n, n), nn.LeakyReLU(0.125), conv(n, zc)
        )
        # h_s (probability.HYPER_SYNTHESIS) and the context network use only conv + ReLU:
        # sicc.model.probability evaluates them exactly.
        self.h_s = nn.Sequential(
            deconv(zc, n), nn.ReLU(), deconv(n, n), nn.ReLU(), conv(n, k, 3, 1)
        )
        self.context_causal = LevelCausalConv2d(m, k, 3, levels)
        self.context_mid = nn.Conv2d(k, k, 1, groups=levels)
        self.context_out = nn.Conv2d(k, 2 * m, 1, groups=levels)
        self.level_film: LevelFilm | None = None
        if level_film or inner_film:
            self.add_level_film(inner=inner_film)

    INNER_LAYERS = (1, 3, 5)
    """The g_s modules (its inverse GDNs) whose outputs the inner level tables scale and shift."""

    def add_level_film(self, inner: bool = False) -> None:
        """Give the synthesis side zero level tables (the identity: the function stays the same); with
        ``inner``, also the inner tables of g_s's hidden activations."""
        if self.level_film is None:
            device = self.g_s[0].weight.device
            self.level_film = LevelFilm(self.config.levels, self.config.latent).to(device)
        if inner:
            self.level_film.add_inner(len(self.INNER_LAYERS), self.config.hidden)

    def synthesize(self, latent: torch.Tensor, level: int) -> torch.Tensor:
        """g_s of a complete latent decoded from the first ``level`` levels (1..levels): with level
        tables, the latent is scaled and shifted for that level first, as the runtime does
        (:func:`sicc.model.level_film.film_transform`)."""
        if self.level_film is None or level <= 0:
            return self.g_s(latent)
        x = self.level_film(latent, level)
        if self.level_film.inner_scale is None:
            return self.g_s(x)
        for index, module in enumerate(self.g_s):
            x = module(x)
            if index in self.INNER_LAYERS:
                x = self.level_film.inner(x, level, self.INNER_LAYERS.index(index))
        return x

    # -- entropy parameters ------------------------------------------------------
    def entropy_parameters(self, y_hat: torch.Tensor, hyper: torch.Tensor):
        """Means and log-scales of every level at once (training: all levels are known)."""
        h = F.relu(self.context_causal(y_hat) + hyper)
        h = F.relu(self.context_mid(h))
        return self._split_means_log_scales(self.context_out(h))

    def _split_means_log_scales(self, params: torch.Tensor):
        b, _, h, w = params.shape
        levels, g = self.config.levels, self.config.group_size
        params = params.view(b, levels, 2, g, h, w)
        return params[:, :, 0].reshape(b, -1, h, w), params[:, :, 1].reshape(b, -1, h, w)

    def level_weights(self, level: int) -> LevelWeights:
        """Weights that map hyper features and levels < ``level`` to this level's parameters."""
        g, k = self.config.group_size, self.config.context_per_level
        hid = slice(level * k, (level + 1) * k)
        out = slice(level * 2 * g, (level + 1) * 2 * g)
        return LevelWeights(
            self.context_causal.weight[hid, : level * g],
            self.context_causal.bias[hid],
            self.context_mid.weight[hid],
            self.context_mid.bias[hid],
            self.context_out.weight[out],
            self.context_out.bias[out],
        )

    def level_parameters(self, previous: torch.Tensor, hyper: torch.Tensor, level: int):
        """Mean and log-scale of one level from the levels before it (float path)."""
        w = self.level_weights(level)
        k = self.config.context_per_level
        h = hyper[:, level * k : (level + 1) * k] + w.causal_b.view(1, -1, 1, 1)
        if level > 0:
            h = h + F.conv2d(previous, w.causal_w, padding=w.causal_w.shape[-1] // 2)
        h = F.relu(F.conv2d(F.relu(h), w.mid_w, w.mid_b))
        params = F.conv2d(h, w.out_w, w.out_b)
        g = self.config.group_size
        return params[:, :g], params[:, g:]

    def sample_details(
        self,
        coded: torch.Tensor,
        hyper: torch.Tensor,
        spread: float,
        uniform: Callable[[tuple[int, ...]], torch.Tensor],
    ) -> torch.Tensor:
        """Complete coded levels with sampled ones: y_e = round(mu + spread * u), u ~ U(-1, 1).

        Each sampled level is conditioned on everything before it, coded or
        sampled, exactly as the decoder will do it.
        """
        levels = [coded]
        n_coded = coded.shape[1] // self.config.group_size
        for level in range(n_coded, self.config.levels):
            mean, _ = self.level_parameters(torch.cat(levels, 1), hyper, level)
            levels.append(ste_round(mean + spread * uniform(tuple(mean.shape)).to(mean)))
        return torch.cat(levels, 1)


def scales_from_log(log_scales: torch.Tensor) -> torch.Tensor:
    """Gaussian scales, floored at SCALE_MIN with the gradient kept where it pushes up."""
    scales = torch.exp(log_scales)
    return scales + (scales.clamp_min(SCALE_MIN) - scales).detach()


def gaussian_likelihood(values: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """P(round(v) = v) under N(mean, scale) integrated over the unit bin, computed on the
    lower tail for numerical stability."""
    centred = torch.abs(values - means)
    normal = torch.distributions.Normal(0.0, 1.0)
    upper = normal.cdf((0.5 - centred) / scales)
    lower = normal.cdf((-0.5 - centred) / scales)
    return (upper - lower).clamp_min(1e-9)
