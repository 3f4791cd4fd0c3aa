"""The validation split: an early signal for a run, minutes instead of a Kodak benchmark's hour.

Forty-one of the training photos are held out (:func:`sicc.train.data.is_validation`) and never
trained on. Their centre crops are coded by the torch network (the function a weights file
exports: rounded latents, the same hyperprior and context network) and decoded at levels 1..8,
where users cut (0.03-0.5 bpp), deterministically (spread 0, the decode the benchmark scores) and
sampled (spread 2, a fixed seed). Each decode is quantized to 8 bits and scored with the
benchmark's own DISTS, LPIPS-alex and PSNR (:mod:`sicc.bench.metrics`); the rate is the ideal code
length of the coded levels and z under the model, which the real coder matches to within its
few bytes of overhead.

    python -m sicc.train validate sicc/weights/sicc-default.npz runs/a/checkpoint.pt --ema

scores each model on the same crops and prints, for the second and later, the change against the
first with its paired standard error over the photos: the A/B of a recipe change. During a run
(``run --validate-every N``) the same scores go to ``validation.jsonl`` beside the log.

Kodak stays for shipping (``python -m sicc.bench``); nothing here reads it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import load_folder
from .network import gaussian_likelihood, scales_from_log
from .objective import SICTrainable

CROP = 256
LEVELS = (1, 2, 4, 8)  # --levels 1-8 for all; these four keep a score to a few minutes
SPREADS = (0.0, 2.0)
METRICS = ("dists", "lpips", "psnr", "bpp")


def centre_crops(images: list[np.ndarray], size: int = CROP) -> torch.Tensor:
    """(N, 3, size, size) float [0, 1]: the centre square of each photo."""
    crops = []
    for im in images:
        h, w = im.shape[:2]
        top, left = (h - size) // 2, (w - size) // 2
        crops.append(im[top : top + size, left : left + size])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255.0).contiguous()


@dataclass
class Scores:
    """Per-photo figures: ``values[(spread, level, metric)]`` is an array over the photos."""

    values: dict[tuple[float, int, str], np.ndarray] = field(default_factory=dict)

    def mean(self, spread: float, level: int, metric: str) -> float:
        return float(self.values[(spread, level, metric)].mean())

    def summary(self) -> dict:
        """Means, as plain values for a log line: {"s0": {"l1": {"dists": ...}, ...}, ...}."""
        out: dict = {}
        for (spread, level, metric), v in sorted(self.values.items()):
            out.setdefault(f"s{spread:g}", {}).setdefault(f"l{level}", {})[metric] = round(float(v.mean()), 5)
        for key, levels in out.items():
            out[key]["mean"] = {m: round(float(np.mean([lv[m] for lv in levels.values()])), 5) for m in METRICS}
        return out


def code_lengths(net: SICTrainable, y_hat: torch.Tensor, z: torch.Tensor):
    """The hyper features, the ideal code length of levels 1..l per photo, cumulative ((b, levels)
    bits), and z's per photo ((b,) bits), of the rounded latent ``y_hat`` and of ``z``, which the z
    prior rounds (``net`` in eval mode). Gradients pass: a straight-through ``y_hat`` can be optimised."""
    model = net.model
    z_hat, z_likelihoods = net.z_prior(z)
    hyper = model.h_s(z_hat)
    means, log_scales = model.entropy_parameters(y_hat, hyper)
    bits = -torch.log2(gaussian_likelihood(y_hat, means, scales_from_log(log_scales)))
    level_bits = bits.reshape(y_hat.shape[0], net.config.levels, -1).sum(2).cumsum(1)
    return hyper, level_bits, -torch.log2(z_likelihoods).flatten(1).sum(1)


class Validator:
    """Scores a network on fixed validation crops; with a ``log``, appends one JSON line per call."""

    def __init__(self, crops: torch.Tensor, log: Path | None = None, levels=LEVELS, spreads=SPREADS,
                 seed: int = 0, batch: int = 8, weights_dir: Path | None = None):
        self.crops, self.log, self.levels, self.spreads = crops, log, tuple(levels), tuple(spreads)
        self.seed, self.batch = seed, batch
        from ..bench.metrics import build_dists
        from .perceptual import load_lpips_alex

        self.lpips = load_lpips_alex(weights_dir).eval()
        self.dists = build_dists(weights_dir).eval()
        with torch.no_grad():
            self._reference = [self.dists.features(self.crops[i : i + batch]) for i in range(0, len(crops), batch)]

    @classmethod
    def from_folder(cls, folder: Path, **kwargs) -> "Validator":
        return cls(centre_crops(load_folder(Path(folder), CROP, split="validation")), **kwargs)

    @torch.no_grad()
    def score(self, net: SICTrainable) -> Scores:
        was_training = net.training
        net.eval()
        model, cfg = net.model, net.config
        device = next(net.parameters()).device
        gen = torch.Generator(device=device)

        def uniform(shape):
            return torch.rand(shape, generator=gen, device=device) * 2 - 1

        def draws_for(start: int, level: int, spread: float) -> None:
            """The noise of one batch's decode at one level and spread is a function of those and the
            seed alone, so a photo's sampled figures do not depend on which levels or spreads are asked."""
            key = np.random.SeedSequence([self.seed, start, level, int(round(spread * 1000))])
            gen.manual_seed(int(key.generate_state(1, np.uint64)[0]) >> 1)

        parts: dict[tuple[float, int, str], list[np.ndarray]] = {}
        try:
            for start in range(0, len(self.crops), self.batch):
                x = self.crops[start : start + self.batch].to(device)
                feats = self._reference[start // self.batch]
                b, _, h, w = x.shape
                y = model.g_a(x).float()
                y_hat = torch.round(y)
                hyper, level_bits, z_bits = code_lengths(net, y_hat, model.h_a(y))
                for level in self.levels:
                    bpp = ((level_bits[:, level - 1] + z_bits) / (h * w)).cpu().numpy()
                    for spread in self.spreads:
                        draws_for(start, level, spread)
                        latent = model.sample_details(y_hat[:, : level * cfg.group_size], hyper, spread, uniform)
                        x_hat = torch.round(model.synthesize(latent, level).float().clamp(0, 1) * 255) / 255
                        mse = ((x_hat - x) ** 2).flatten(1).mean(1).clamp_min(1e-10)
                        figures = {
                            "psnr": (-10 * torch.log10(mse)).cpu().numpy(),
                            "lpips": self.lpips(x_hat * 2 - 1, x * 2 - 1).flatten().cpu().numpy(),
                            "dists": self.dists.distance(feats, self.dists.features(x_hat)).flatten().cpu().numpy(),
                            "bpp": bpp,
                        }
                        for metric, v in figures.items():
                            parts.setdefault((spread, level, metric), []).append(np.asarray(v, dtype=np.float64))
        finally:
            net.train(was_training)
        return Scores({k: np.concatenate(v) for k, v in parts.items()})

    def __call__(self, net: SICTrainable, step: int, which: str = "weights") -> Scores:
        scores = self.score(net)
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a") as f:
                f.write(json.dumps({"step": step, "of": which, "photos": len(self.crops), **scores.summary()}) + "\n")
        return scores


def load_network(path: Path, ema: bool = False) -> SICTrainable:
    """A weights file or a training checkpoint (its weight average with ``ema``) as a ``SICTrainable``."""
    from ..model.config import ModelConfig
    from .export import load_trainable
    from .loop import checkpoint_weights, read_checkpoint

    state = read_checkpoint(path)
    if state is None:
        return load_trainable(Path(path))
    weights = checkpoint_weights(state, path, ema)
    net = SICTrainable.for_state(ModelConfig.from_dict(state["config"]), weights)
    net.load_state_dict(weights)
    return net


def format_comparison(names: list[str], scores: list[Scores]) -> str:
    """Per spread, a table of each model's means per level and, for the others, the change against the
    first with its paired standard error over the photos."""
    base = scores[0]
    lines = []
    spreads = sorted({k[0] for k in base.values})
    levels = sorted({k[1] for k in base.values})
    for spread in spreads:
        lines.append(f"\nspread {spread:g} ({'deterministic' if spread == 0 else 'sampled, seed 0'}); "
                     f"{len(base.values[(spread, levels[0], 'dists')])} photos")
        header = "level   bpp    " + "  ".join(f"{'DISTS':>7} {'LPIPS':>7} {'PSNR':>6}" for _ in names)
        lines.append(header)
        for level in levels:
            row = f"{level:>5} {base.mean(spread, level, 'bpp'):6.3f}   "
            row += "  ".join(f"{s.mean(spread, level, 'dists'):7.4f} {s.mean(spread, level, 'lpips'):7.4f} "
                             f"{s.mean(spread, level, 'psnr'):6.2f}" for s in scores)
            lines.append(row)
        for name, s in zip(names[1:], scores[1:]):
            lines.append(f"change of {name} against {names[0]} (paired SE):")
            for level in levels:
                cells = []
                for metric in METRICS:
                    d = s.values[(spread, level, metric)] - base.values[(spread, level, metric)]
                    se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
                    cells.append(f"{metric} {d.mean():+.4f} ± {se:.4f}")
                lines.append(f"  level {level}: " + ", ".join(cells))
            lines += _matched_lines(names[0], base, s, spread, levels)
    return "\n".join(lines)


RATE_MOVED = 1e-3
"""The relative change of a level's mean rate beyond which :func:`format_comparison` also compares at
matched rates (a decoder-only run keeps every rate; a run that trains the encoder moves them)."""


def _rows(scores: Scores, spread: float, levels: list[int]) -> list[dict]:
    """Per-photo rows as the benchmark's curves take them: {"image", "level", "bpp", metrics}."""
    photos = len(scores.values[(spread, levels[0], "bpp")])
    return [{"image": str(i), "level": level,
             **{m: float(scores.values[(spread, level, m)][i]) for m in METRICS}}
            for level in levels for i in range(photos)]


def _se(se: float | None) -> str:
    """A jackknife SE, or "–" where it has none (a photo left out takes a curve off the target)."""
    return "–" if se is None else f"{se:.4f}"


def _matched_lines(base_name: str, base: Scores, other: Scores, spread: float, levels: list[int]) -> list[str]:
    """Where ``other``'s rates moved: its change against ``base`` at matched rates, at the rates of
    ``base``'s levels (each curve the photo-set mean per level, interpolated in log(bpp), no
    extrapolation: ``sicc.bench.curves.matched_change``), with the jackknife SE over the photos."""
    from ..bench.curves import matched_change

    targets = [base.mean(spread, lv, "bpp") for lv in levels]
    moved = [other.mean(spread, lv, "bpp") / rate - 1 for lv, rate in zip(levels, targets)]
    if max(map(abs, moved)) <= RATE_MOVED or len(levels) < 2:
        return []
    quality = tuple(m for m in METRICS if m != "bpp")
    changes = matched_change(_rows(other, spread, levels), _rows(base, spread, levels), targets, quality)
    lines = [f"  the rates moved: at matched rates (both curves interpolated in log(bpp) at {base_name}'s "
             "level rates; jackknife SE):"]
    for level, change, point in zip(levels, moved, changes):
        cells = [f"{m} – (outside a curve)" if point[m]["change"] is None else
                 f"{m} {point[m]['change']:+.4f} ± {_se(point[m]['se'])}" for m in quality]
        lines.append(f"  at level {level}'s {point['bpp']:.3f} bpp (rate at this level {100 * change:+.1f} %): "
                     + ", ".join(cells))
    return lines


def runtime_spread_scores(weights: Path | None, folder: Path, levels=tuple(range(1, 9)), spreads=(0.0, 1.0, 2.0),
                          seed: int = 0, threads: int | None = None) -> dict:
    """The real codec on the whole validation photos: each photo encoded once, decoded at each level with
    each spread (one sample, ``seed``), scored with the benchmark's metrics. The measurement behind the
    default spread of a single decode (``sicc.model.config.DEFAULT_SPREAD``). Returns
    {spread: {level: {metric: mean}}} plus the files' mean bpp per level under "bpp"."""
    from PIL import Image

    from ..bench.metrics import Metrics
    from ..codec import Codec
    from ..stream import file_info

    codec = Codec.load(weights)
    metrics = Metrics()
    photos = load_folder(Path(folder), CROP, split="validation")
    sums: dict = {}
    bpp: dict = {}
    for rgb in photos:
        image = Image.fromarray(rgb)
        ref = metrics.reference(image)
        data = codec.encode(rgb, threads=threads)
        info = file_info(data)
        for level in levels:
            bpp.setdefault(level, []).append(info.levels[level - 1].cumulative_bpp)
            for spread in spreads:
                out = codec.decode(data, level=level, spread=spread, seed=seed, threads=threads)[0]
                for metric, value in metrics.compare(ref, out).items():
                    sums.setdefault(spread, {}).setdefault(level, {}).setdefault(metric, []).append(value)
    result = {s: {lv: {m: float(np.mean(v)) for m, v in ms.items()} for lv, ms in by.items()} for s, by in sums.items()}
    result["bpp"] = {lv: float(np.mean(v)) for lv, v in bpp.items()}
    result["photos"] = len(photos)
    return result


def format_spread_scores(result: dict) -> str:
    spreads = sorted(k for k in result if isinstance(k, float))
    lines = [f"{result['photos']} validation photos, whole; one decode per level and spread (seed 0)",
             "| level | bpp | " + " | ".join(f"DISTS s={s:g}" for s in spreads) + " | "
             + " | ".join(f"LPIPS s={s:g}" for s in spreads) + " | " + " | ".join(f"PSNR s={s:g}" for s in spreads)
             + " |", "|---" * (2 + 3 * len(spreads)) + "|"]
    for level in sorted(result["bpp"]):
        cells = [f"{result[s][level]['dists']:.4f}" for s in spreads]
        cells += [f"{result[s][level]['lpips']:.4f}" for s in spreads]
        cells += [f"{result[s][level]['psnr']:.2f}" for s in spreads]
        lines.append(f"| {level} | {result['bpp'][level]:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
