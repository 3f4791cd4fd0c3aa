"""What should a deterministic decode put in the levels it does not have? (issue 48, session 43: a probe,
not a feature.)

    python scripts/missing_levels_probe.py [--weights W] [--fill round,mean,expect,shrink0.8]

The decode that the benchmark scores (spread 0) completes the missing levels one at a time with
``round(mu)``: the rounded mean of the exact context network, conditioned on every level before it
(``sicc.train.network.SICModel.sample_details``; formats/sic-v1.md, "Sampling"). Rounding throws away
the fraction of ``mu``, and the symbol's expected value under the model is not ``mu`` either. Each
``--fill`` completes the missing levels differently, with g_s and the coded levels unchanged:

- ``round``: ``round(mu)``, what sicc does now;
- ``mean``: ``mu`` itself, on the fixed-point grid of the exact network (1/256);
- ``expect``: the expected symbol under the quantized Gaussian the coder uses, ``sum_k k P(k)``
  (with the model's float scale, not the coder's table entry);
- ``shrinkF``: ``F * mu`` on the same grid (e.g. ``shrink0.8``).

Each is scored exactly as ``python -m sicc.train validate`` scores a model (41 validation crops,
training photos held out, never Kodak; the benchmark's DISTS, LPIPS and PSNR), and the others are
compared with the first, photo by photo. The rates do not move: only the decoder's guess does.
"""

from __future__ import annotations

import argparse
import math
import types
from pathlib import Path

import torch

from sicc.train.network import gaussian_likelihood, scales_from_log
from sicc.train.validate import LEVELS, Validator, format_comparison, load_network

GRID = 256.0  # the exact network's means have 8 fractional bits


def fill_value(fill: str, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """What a missing level's latents are set to, from its mean and log-scale."""
    if fill == "round":
        return torch.round(mean)
    if fill == "mean":
        return torch.round(mean * GRID) / GRID
    if fill.startswith("shrink"):
        return torch.round(float(fill[len("shrink"):]) * mean * GRID) / GRID
    if fill == "expect":
        # the symbols within 8 scales of round(mu) (the coder's scales reach SCALE_MAX = 64): the
        # mass beyond is below float32's resolution; chunks of the window keep the memory small
        scales = scales_from_log(log_scale)
        reach = int(math.ceil(8 * float(scales.max()))) + 1
        centre, total, weighted = torch.round(mean), torch.zeros_like(mean), torch.zeros_like(mean)
        for start in range(-reach, reach + 1, 64):
            offsets = torch.arange(start, min(start + 64, reach + 1), dtype=mean.dtype, device=mean.device)
            ks = centre.unsqueeze(0) + offsets.view(-1, *([1] * mean.dim()))
            p = gaussian_likelihood(ks, mean.unsqueeze(0), scales.unsqueeze(0))
            total, weighted = total + p.sum(0), weighted + (ks * p).sum(0)
        return weighted / total
    raise SystemExit(f"unknown --fill {fill!r}: round, mean, expect or shrinkF")


def use_fill(model, fill: str) -> None:
    """Make ``model``'s spread-0 completion use ``fill`` (sampled decodes are left as they are)."""
    original = type(model).sample_details

    def sample_details(self, coded, hyper, spread, uniform):
        if spread != 0 or fill == "round":
            return original(self, coded, hyper, spread, uniform)
        levels = [coded]
        for level in range(coded.shape[1] // self.config.group_size, self.config.levels):
            mean, log_scale = self.level_parameters(torch.cat(levels, 1), hyper, level)
            levels.append(fill_value(fill, mean, log_scale))
        return torch.cat(levels, 1)

    model.sample_details = types.MethodType(sample_details, model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=Path, default=Path("sicc/weights/sicc-default.npz"))
    ap.add_argument("--ema", action="store_true", help="a checkpoint's weight average")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    ap.add_argument("--fill", default="round,mean,expect,shrink0.8", help="comma-separated; the first is the base")
    ap.add_argument("--levels", default=",".join(map(str, LEVELS)))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    fills = a.fill.split(",")
    for fill in fills:
        fill_value(fill, torch.zeros(1), torch.zeros(1))  # a bad name fails before the minutes of work
    validator = Validator.from_folder(a.data, levels=[int(v) for v in a.levels.split(",")], spreads=(0.0,))
    net, scores = load_network(a.weights, ema=a.ema), []
    for fill in fills:
        use_fill(net.model, fill)  # rebinds the instance's method: the class's is the base each time
        scores.append(validator.score(net))
        print(f"scored {fill}", flush=True)
    print(format_comparison(fills, scores))


if __name__ == "__main__":
    main()
