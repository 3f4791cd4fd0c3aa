"""Would optimising the latents at encode time pay? (issue 48, session 42: a probe, not a feature.)

    python scripts/latent_refine_probe.py [--photos 8] [--iters 40] [--lr 0.03] [--perceptual 1]

The decoder and the format stay as they are; only the encoder changes. For the first ``--photos``
validation crops (training photos held out, never Kodak) it starts from the shipped encoder's y and
z, and runs Adam on them (straight-through rounding, a cosine learning rate) against the training
objective of the levels: each iteration two levels drawn from 1..8 and one from 9..16, each
``lambda_d(l) * MSE + perceptual * lambda_p(l) * (LPIPS + texture * texture distance)
+ rate * lambda_r(l) * bpp(levels 1..l, z)`` of its deterministic (spread 0) decode, with
``--low-mse`` on levels 1..8 as in training. The rounded result is scored exactly as
``python -m sicc.train validate`` scores a model (the benchmark's DISTS, LPIPS and PSNR, the ideal
code length), against the plain encode of the same crops, at the same level and, since the rates
move, at matched rates.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sicc.train.data import load_folder
from sicc.train.network import ste_round
from sicc.train.objective import level_lambdas
from sicc.train.perceptual import LPIPSLoss
from sicc.train.validate import Validator, centre_crops, code_lengths, format_comparison, load_network


class _Fixed(nn.Module):
    """Stands in for g_a or h_a: returns what ``source`` gives, whatever its input."""

    def __init__(self, source):
        super().__init__()
        self.source = source

    def forward(self, _):
        return self.source()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=Path, default=Path("sicc/weights/sicc-default.npz"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--lr", type=float, default=0.03, help="Adam's peak step on y and z (latent units)")
    ap.add_argument("--perceptual", type=float, default=1.0, help="factor on lambda_p (0: MSE and rate only)")
    ap.add_argument("--texture", type=float, default=0.5)
    ap.add_argument("--low-mse", type=float, default=2.0)
    ap.add_argument("--rate", type=float, default=1.0, help="factor on lambda_r")
    ap.add_argument("--levels", default="1,2,3,4,6,8,12,16", help="levels scored")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    net = load_network(a.weights).eval().requires_grad_(False)
    model, cfg = net.model, net.config
    g = cfg.group_size
    crops = centre_crops(load_folder(a.data, 256, split="validation"))[: a.photos]
    validator = Validator(crops, levels=tuple(int(v) for v in a.levels.split(",")), spreads=(0.0,))
    perceptual = LPIPSLoss().eval().requires_grad_(False)
    zeros = torch.zeros  # spread 0: the missing levels are the rounded means

    def refine(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            y = model.g_a(x).float()
            z = model.h_a(y)
        y, z = y.clone().requires_grad_(True), z.clone().requires_grad_(True)
        opt = torch.optim.Adam([y, z], lr=a.lr)
        pixels = x.shape[2] * x.shape[3]
        rng = np.random.default_rng(0)
        for it in range(a.iters):
            for group in opt.param_groups:
                group["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * it / a.iters))
            y_hat = ste_round(y)
            hyper, cumulative, z_bits = code_lengths(net, y_hat, z)
            levels = rng.choice(np.arange(1, 9), 2, replace=False).tolist() + [int(rng.integers(9, 17))]
            loss = x.new_zeros(())
            for level in levels:
                lam_d, lam_p, lam_r = level_lambdas(level, cfg.levels)
                lam_d *= a.low_mse if level <= cfg.levels // 2 else 1.0
                x_hat = model.synthesize(model.sample_details(y_hat[:, : level * g], hyper, 0.0, zeros), level)
                lpips, texture = perceptual(x_hat.float(), x, texture=True)
                rate = (cumulative[:, level - 1] + z_bits).mean() / pixels
                loss = loss + lam_d * F.mse_loss(x_hat.float(), x) + a.perceptual * lam_p * (lpips + a.texture * texture) \
                    + a.rate * lam_r * rate
            opt.zero_grad()
            loss.backward()
            opt.step()
        return y.detach(), z.detach()

    start = time.time()
    plain = validator.score(net)
    refined = []
    for first in range(0, len(crops), validator.batch):
        refined.append(refine(crops[first : first + validator.batch]))
    print(f"plain encode scored and {len(crops)} crops refined in {time.time() - start:.0f} s", flush=True)

    # Score the refined latents through the validator's own path: g_a and h_a replaced, batch by batch.
    batches, current = iter(refined), {}

    def next_y():
        current["y"], current["z"] = next(batches)
        return current["y"]

    g_a, h_a = model.g_a, model.h_a
    try:
        model.g_a, model.h_a = _Fixed(next_y), _Fixed(lambda: current["z"])
        scores = validator.score(net)
    finally:
        model.g_a, model.h_a = g_a, h_a
    print(format_comparison(["plain", "refined"], [plain, scores]))


if __name__ == "__main__":
    main()
