"""The adversarial term of method.md's optional second stage: a patch discriminator and the
non-saturating GAN losses.

Training-only: the discriminator judges 256² crops (real photos against g_s's decodes) and never
leaves the checkpoint. The runtime, the weights file and the format do not change: what an
adversarial run changes is g_s's weights (and the level tables'), nothing else.

    generator:     softplus(-D(x_hat))                       (non-saturating)
    discriminator: softplus(-D(x)) + softplus(D(x_hat))

Both are means over the discriminator's patch logits. The generator's term is weighted per level
like LPIPS (``lambda_p(l)`` of method.md, times ``--adversarial``), in the level branch only: the
decodes users cut to, deterministic or sampled as the step plans.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    """Four spectrally normalised 4×4 convolutions, three of stride 2 (a PatchGAN): one logit per
    patch of about 46² pixels, from RGB in [0, 1]. ``width`` is the first layer's channels."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.layers = nn.Sequential(
            spectral_norm(nn.Conv2d(3, w, 4, 2, 1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(w, 2 * w, 4, 2, 1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(2 * w, 4 * w, 4, 2, 1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(4 * w, 1, 4, 1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x * 2 - 1).float()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss: small where the discriminator takes the decode for a photo."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss: photos towards +, decodes towards -."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
