"""The progressive SIC training objective (method.md):

    loss = 0.5 * L_full + 0.5 * L_level + L_consistency

``L_full`` codes every level deterministically; ``L_level`` codes levels 1..l
and samples the rest; ``L_consistency`` asks the encoder to map each sampled
reconstruction back onto the latent it was decoded from (idempotence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..model.config import ModelConfig
from .network import SICModel, gaussian_likelihood, has_inner_film, has_level_film, scales_from_log, ste_round
from .adversarial import generator_loss
from .prior import FactorizedPrior


@dataclass(frozen=True)
class LossSettings:
    full_mse: float = 2048.0
    full_lpips: float = 8.0
    full_rate: float = 1.0
    consistency: float = 1.0
    samples: int = 1  # M: sampled detail draws per step
    spread: float = 2.0  # s in y_e = round(mu + s*u)
    # Weight of the DISTS-like texture distance (perceptual.texture_distance) added to every
    # LPIPS term, so it follows the same per-level weights. 0: the objective of method.md.
    texture: float = 0.0
    # -- where the weight sits (issue 48: aim the objective at the 0.1-0.5 bpp decodes users cut to) --
    full_weight: float = 0.5  # weight of L_full (all 16 levels, deterministic); L_level keeps 0.5
    deterministic_share: float = 0.0  # share of level-branch steps that decode with spread 0 (the scored decode)
    deterministic_from: int = 1  # the lowest level whose steps ``deterministic_share`` applies to (1: all)
    low_levels: float | None = None  # chance that a step's level is drawn from 1..L/2 (None: cycle L..1)
    low_mse: float = 1.0  # factor on lambda_d (the MSE weight) of levels 1..L/2
    high_mse: float = 1.0  # factor on lambda_d of levels L/2+1..L (the 0.75-1.2 bpp decodes' PSNR)
    decoder_only: bool = False  # train g_s alone: the encoder, hyperprior, context and z prior are frozen
    # Weight of the adversarial term (sicc.train.adversarial) of the level branch, times lambda_p(l) as
    # LPIPS is: method.md's optional second stage. 0: none.
    adversarial: float = 0.0
    # Weight of DISTS itself (VGG16 with its learned alpha/beta: the benchmark's metric) on the centre
    # DISTS_WINDOW^2 of the level branch's decode, times lambda_p(l) as LPIPS is. 0: none.
    dists: float = 0.0
    dists_levels: int = 0  # the dists term applies to level-branch steps at levels 1..N only (0: every level)


DISTS_WINDOW = 128
"""Side of the centre window the ``dists`` term compares: a VGG16 pass with its backward on the whole
256^2 batch would cost about twice a decoder-only step on 2 CPU cores; on the centre 128^2 it adds
about 45 % (3.3 s a step against 2.3 s, hidden 128, bf16). DISTS compares global feature statistics, so a window is still a whole-image measure."""


def dists_window(x: torch.Tensor, side: int = DISTS_WINDOW) -> torch.Tensor:
    """The centre ``side`` x ``side`` window of ``x`` (all of it where it is smaller)."""
    h, w = x.shape[-2:]
    top, left = max((h - side) // 2, 0), max((w - side) // 2, 0)
    return x[..., top:top + side, left:left + side]


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def level_lambdas(level: int, levels: int) -> tuple[float, float, float]:
    """(lambda_d, lambda_p, lambda_r) of the paper for level 1..L, rescaled to 16 levels."""
    t = level * 16.0 / levels
    return 128.0 * t, 2.0 ** (5.0 - t / 8.0), 2.0 ** (6.0 - 6.0 * t / 16.0)


def level_for_step(step: int, levels: int) -> int:
    """Cycle L, L-1, ..., 1 as the paper does."""
    return levels - (step % levels)


def step_plan(step: int, levels: int, settings: LossSettings, seed: int = 0) -> tuple[int, float]:
    """The level-branch level and sampling spread of (0-based) ``step``.

    The paper's plan by default: cycle L..1, sample with ``settings.spread``. With ``low_levels``
    the level is drawn, levels 1..L/2 with that chance (uniform within each half); with
    ``deterministic_share`` that share of steps decodes with spread 0; with ``deterministic_from``
    only steps at that level or above do, so the levels below keep every step sampled. The draws
    are a function of (seed, step) alone, so a resumed run makes the same ones.
    """
    if settings.low_levels is None and not settings.deterministic_share:
        return level_for_step(step, levels), settings.spread
    import numpy as np

    rng = np.random.default_rng([seed, step, 48])
    u_half, u_level, u_spread = rng.random(3)
    level = level_for_step(step, levels)
    if settings.low_levels is not None:
        half = levels // 2
        if u_half < settings.low_levels:
            level = 1 + int(u_level * half)
        else:
            level = half + 1 + int(u_level * (levels - half))
    deterministic = u_spread < settings.deterministic_share and level >= settings.deterministic_from
    spread = 0.0 if deterministic else settings.spread
    return level, spread


class SICTrainable(nn.Module):
    """The model plus the factorized prior of ``z``."""

    def __init__(self, config: ModelConfig = ModelConfig(), level_film: bool = False, inner_film: bool = False):
        super().__init__()
        self.model = SICModel(config, level_film=level_film, inner_film=inner_film)
        self.z_prior = FactorizedPrior(config.hyper)

    @classmethod
    def for_state(cls, config: ModelConfig, state) -> "SICTrainable":
        """The network that a checkpoint's state dict fits: with level tables where it has them."""
        return cls(config, level_film=has_level_film(state), inner_film=has_inner_film(state))

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def _part(name: str):
    """A labelled region for ``python -m sicc.train profile`` (free when not profiling)."""
    return torch.profiler.record_function(name)


def _full_precision(x: torch.Tensor):
    """A region where autocast is off (float32 arithmetic) on ``x``'s device."""
    return torch.autocast(x.device.type, enabled=False)


def _bits(likelihoods: torch.Tensor) -> torch.Tensor:
    return -torch.log2(likelihoods)


def sic_loss(
    net: SICTrainable,
    perceptual: nn.Module,
    x: torch.Tensor,
    level: int,
    settings: LossSettings,
    generator: torch.Generator | None = None,
    spread: float | None = None,
    discriminator: nn.Module | None = None,
    fakes: list | None = None,
    dists: nn.Module | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One step's loss and its terms (floats, for the log).

    Under autocast (bf16) only the transforms g_a, g_s and the perceptual
    network run in reduced precision; the hyperprior, the entropy parameters,
    the detail sampling and every rate term run in float32, as the exact
    integer decoder will.

    ``spread`` (default ``settings.spread``) samples the level branch's missing levels; 0 decodes
    them deterministically, as ``sicc decode --spread 0`` does. With ``settings.decoder_only``
    everything before g_s runs without gradients and the consistency term (which trains the
    encoder) is left out: only g_s learns, and coded files stay byte-identical.

    With a ``discriminator`` and ``settings.adversarial``, the level branch's decode is also judged
    by it (the generator's non-saturating term, weighted like LPIPS); ``fakes``, a list, receives
    that decode (detached) for the discriminator's own step.

    With a ``dists`` network (``sicc.train.perceptual.DISTSVGG``) and ``settings.dists``, the level
    branch's decode is also scored by DISTS on the centre window (:func:`dists_window`), weighted
    like LPIPS; the reference's VGG features are computed once, without gradients. With
    ``settings.dists_levels`` N, only steps at levels 1..N are (the others skip the VGG pass).
    """
    import contextlib

    model, cfg = net.model, net.config
    spread = settings.spread if spread is None else spread
    frozen = torch.no_grad() if settings.decoder_only else contextlib.nullcontext()
    b, _, h, w = x.shape
    pixels = b * h * w

    def uniform(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=x.device) * 2 - 1

    with frozen, _part("g_a"):
        y = model.g_a(x).float()
    with frozen, _full_precision(x), _part("hyperprior + entropy parameters"):
        z = model.h_a(y)
        _, z_likelihoods = net.z_prior(z)
        z_bits = _bits(z_likelihoods).sum() / pixels
        hyper = model.h_s(ste_round(z))
        y_hat = ste_round(y)
        means, log_scales = model.entropy_parameters(y_hat, hyper)
        y_noisy = y + uniform(tuple(y.shape)) * 0.5
    with frozen:
        y_bits = _bits(gaussian_likelihood(y_noisy, means, scales_from_log(log_scales)))
    bits_per_level = y_bits.reshape(b, cfg.levels, -1).sum(dim=(0, 2)) / pixels

    with _part("g_s"):
        x_full = model.synthesize(y_hat, cfg.levels).float()
    full_mse = F.mse_loss(x_full, x)
    def perceive(x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(LPIPS, texture distance); the second is 0 without a texture weight."""
        with _part("LPIPS"):
            if settings.texture:
                return perceptual(x_hat, x, texture=True)
            return perceptual(x_hat, x), x.new_zeros(())

    full_lpips, full_texture = perceive(x_full)
    full_rate = bits_per_level.sum() + z_bits
    full_perceptual = full_lpips + settings.texture * full_texture
    loss_full = settings.full_mse * full_mse + settings.full_lpips * full_perceptual + settings.full_rate * full_rate

    lam_d, lam_p, lam_r = level_lambdas(level, cfg.levels)
    lam_d *= settings.low_mse if level <= cfg.levels // 2 else settings.high_mse
    consistency = 0.0 if settings.decoder_only else settings.consistency
    coded = y_hat[:, : level * cfg.group_size]
    level_rate = bits_per_level[:level].sum() + z_bits
    mse_l = lpips_l = texture_l = cons_l = adv_l = dists_l = x.new_zeros(())
    adversarial = settings.adversarial if discriminator is not None else 0.0
    dists_weight = settings.dists if dists is not None else 0.0
    if settings.dists_levels and level > settings.dists_levels:
        dists_weight = 0.0
    if dists_weight:
        with _part("DISTS"):
            reference_features = [f.float() for f in dists.features(_channels_last(dists_window(x)))]
    for _ in range(settings.samples):
        with frozen, _full_precision(x), _part("detail sampling"):
            latent = model.sample_details(coded, hyper, spread, uniform)
        with _part("g_s"):
            x_level = model.synthesize(latent, level).float()
        mse_l = mse_l + F.mse_loss(x_level, x) / settings.samples
        lpips_s, texture_s = perceive(x_level)
        lpips_l = lpips_l + lpips_s / settings.samples
        texture_l = texture_l + texture_s / settings.samples
        if dists_weight:
            with _part("DISTS"):
                features = dists.feature_maps(_channels_last(dists_window(x_level)))
                with _full_precision(x):
                    distance = dists.distance(reference_features, [f.float() for f in features])
                dists_l = dists_l + distance.mean() / settings.samples
        if fakes is not None:
            fakes.append(x_level.detach())
        if adversarial:
            with _part("discriminator"):
                adv_l = adv_l + generator_loss(discriminator(x_level)) / settings.samples
        if consistency:
            with _part("consistency re-encode (g_a)"):
                cons_l = cons_l + F.mse_loss(model.g_a(x_level).float(), latent.detach()) / settings.samples
    loss_level = (lam_d * mse_l + lam_p * (lpips_l + settings.texture * texture_l + adversarial * adv_l
                                           + dists_weight * dists_l)
                  + lam_r * level_rate)
    loss = settings.full_weight * loss_full + 0.5 * loss_level + consistency * cons_l

    psnr_full = -10 * math.log10(max(full_mse.item(), 1e-10))
    terms = {
        "loss": loss.item(),
        "level": level,
        "spread": spread,
        "full_mse": full_mse.item(),
        "full_psnr": psnr_full,
        "full_lpips": full_lpips.item(),
        "full_bpp": full_rate.item(),
        "level_mse": mse_l.item(),
        "level_lpips": lpips_l.item(),
        "level_bpp": level_rate.item(),
        "consistency": cons_l.item(),
        "z_bpp": z_bits.item(),
    }
    if adversarial:
        terms["adversarial"] = adv_l.item()
    if dists_weight:
        terms["level_dists"] = dists_l.item()
    if settings.texture:
        terms.update(full_texture=full_texture.item(), level_texture=texture_l.item())
    terms.update({f"bpp_l{i + 1}": v for i, v in enumerate(torch.cumsum(bits_per_level, 0).add(z_bits).tolist())})
    return loss, terms
