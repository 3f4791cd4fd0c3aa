"""Building blocks: GDN and the level-causal convolution.

GDN is written here (a few lines) instead of imported from CompressAI so that
decoding never pays CompressAI's import time (~6 s: it imports its datasets).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def deconv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )


class GDN(nn.Module):
    """Generalized divisive normalization (Balle et al. 2016); ``inverse`` gives IGDN.

    beta and gamma are kept non-negative by squaring their parameters, with a
    floor on beta so the denominator never reaches zero.
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6):
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self.beta_sqrt = nn.Parameter(torch.ones(channels))
        self.gamma_sqrt = nn.Parameter(torch.eye(channels) * 0.1**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        beta = self.beta_sqrt**2 + self.beta_min
        gamma = (self.gamma_sqrt**2).view(channels, channels, 1, 1)
        norm = F.conv2d(x * x, gamma, beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


def level_of_channel(channels: int, levels: int) -> torch.Tensor:
    """Level index of each channel when ``channels`` are cut into ``levels`` equal groups."""
    return torch.arange(channels) // (channels // levels)


class LevelCausalConv2d(nn.Conv2d):
    """Convolution whose outputs for level g see only input levels < g.

    This masking is what makes the stream truncatable: the entropy parameters of
    a level never depend on a later level. One pass gives every level's
    parameters during training; decoding evaluates it one level at a time.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, levels: int):
        super().__init__(in_ch, out_ch, kernel, padding=kernel // 2)
        self.levels = levels
        mask = level_of_channel(in_ch, levels)[None, :] < level_of_channel(out_ch, levels)[:, None]
        self.register_buffer("mask", mask[:, :, None, None].float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)
