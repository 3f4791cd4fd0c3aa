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


class ProjectedDiscriminator(nn.Module):
    """A discriminator on frozen features (a projected GAN, Sauer et al. 2021): LPIPS' AlexNet, from the
    same local weights, computes the first three stages' features, and a small trainable head per stage
    (a 1×1 and a 3×3 convolution, spectrally normalised) gives patch logits. A fresh one learns in a
    few hundred steps what a pixel discriminator needs thousands for. ``width``: the heads' channels."""

    STAGES = 3

    def __init__(self, width: int = 64, weights_dir=None):
        super().__init__()
        from .perceptual import LPIPSAlex

        alex = LPIPSAlex(weights_dir)
        self.convs = nn.ModuleList(list(alex.convs)[: self.STAGES])
        self.convs.requires_grad_(False)
        self.register_buffer("shift", alex.shift.clone(), persistent=False)
        self.register_buffer("scale", alex.scale.clone(), persistent=False)
        self.heads = nn.ModuleList(
            nn.Sequential(spectral_norm(nn.Conv2d(conv.out_channels, width, 1)), nn.LeakyReLU(0.2),
                          spectral_norm(nn.Conv2d(width, 1, 3, 1, 1)))
            for conv in self.convs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's patch logits (N, patches): the losses weigh the stages equally."""
        from .perceptual import alex_stages

        h = ((x * 2 - 1) - self.shift) / self.scale
        return [head(f).float().flatten(1) for f, head in zip(alex_stages(h, self.convs), self.heads)]


DISCRIMINATORS = {"patch": PatchDiscriminator, "projected": ProjectedDiscriminator}
"""The discriminators ``run --discriminator`` chooses from."""


def trainable(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of a discriminator that learn (a projected one's backbone stays frozen)."""
    return [p for name, p in module.named_parameters() if not name.startswith("convs.")]


def _stages(logits) -> list[torch.Tensor]:
    return list(logits) if isinstance(logits, (list, tuple)) else [logits]


def _mean(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(values).mean()


def generator_loss(fake_logits) -> torch.Tensor:
    """The non-saturating generator loss: small where the discriminator takes the decode for a photo
    (logits: a tensor, or a list of them, one per stage, weighed equally)."""
    return _mean([F.softplus(-f).mean() for f in _stages(fake_logits)])


def discriminator_loss(real_logits, fake_logits) -> torch.Tensor:
    """The discriminator's loss: photos towards +, decodes towards -."""
    return _mean([F.softplus(-r).mean() + F.softplus(f).mean()
                  for r, f in zip(_stages(real_logits), _stages(fake_logits))])


def probability(logits) -> float:
    """The discriminator's mean probability of "photo" (for the log)."""
    return _mean([torch.sigmoid(x).mean() for x in _stages(logits)]).item()
