"""The shipped weights file: network weights plus the integer tables the coder needs.

A weights file is a ``torch.save`` dict of plain tensors (no pickled classes):
the float network, the factorized prior of ``z`` as integer frequencies, and
the table of Gaussian scales. Its *model id* is a SHA-256 over all of them, so a
``.sic`` file (which stores the id) is never decoded with another model.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import ModelConfig
from .sic import SCALE_MIN, SICModel

WEIGHTS_FORMAT = "sicc-weights-1"
Z_BOUND = 64
"""z symbols are clamped to [-Z_BOUND, Z_BOUND]."""
Z_FREQUENCY_BITS = 16
SCALE_STEP_SHIFT = 2
"""A scale-table step is 2**SCALE_STEP_SHIFT units of the fixed-point log-scale (1/64 in ln)."""
SCALE_MAX = 64.0


def default_weights_path() -> Path:
    return Path(__file__).resolve().parents[1] / "weights" / "sicc-default.pt"


@dataclass(frozen=True)
class ModelWeights:
    """Everything the codec needs from a weights file."""

    config: ModelConfig
    model_state: dict[str, torch.Tensor]
    z_frequencies: np.ndarray  # (hyper, 2*Z_BOUND+1) int64, each row sums to 2**Z_FREQUENCY_BITS
    scale_table: np.ndarray  # float64 Gaussian scales, indexed by fixed_point.scale_index
    scale_offset: int  # fixed-point log-scale of table entry 0's lower edge
    model_id: bytes
    training: dict = field(default_factory=dict)
    z_prior_state: dict[str, torch.Tensor] = field(default_factory=dict)

    def build_model(self) -> SICModel:
        model = SICModel(self.config)
        model.load_state_dict(self.model_state)
        return model.eval()


def scale_table(config: ModelConfig) -> tuple[np.ndarray, int]:
    """Bin centres of the log-scale grid from SCALE_MIN to SCALE_MAX, and the grid's offset."""
    unit = 2.0**config.activation_bits
    offset = round(math.log(SCALE_MIN) * unit)
    step = 2**SCALE_STEP_SHIFT
    count = math.ceil((math.log(SCALE_MAX) * unit - offset) / step) + 1
    centres = np.exp((offset + (np.arange(count) + 0.5) * step) / unit)
    return np.maximum(centres, SCALE_MIN), offset


def z_frequencies(z_prior) -> np.ndarray:
    """Integer frequencies of z in [-Z_BOUND, Z_BOUND] per channel, from the trained prior.

    Every symbol keeps a frequency of at least 1 so any clamped value is codable.
    """
    values = torch.arange(-Z_BOUND, Z_BOUND + 1, dtype=torch.float32)
    channels = z_prior.quantiles.shape[0]
    with torch.no_grad():
        likelihood = z_prior.likelihood(values.view(1, 1, -1).repeat(channels, 1, 1))
    pmf = likelihood.view(channels, -1).double().numpy()
    pmf = pmf / pmf.sum(axis=1, keepdims=True)
    total = 2**Z_FREQUENCY_BITS
    freq = np.floor(pmf * (total - pmf.shape[1])).astype(np.int64) + 1
    freq[np.arange(channels), pmf.argmax(axis=1)] += total - freq.sum(axis=1)
    return freq


def compute_model_id(config: ModelConfig, model_state: dict[str, torch.Tensor],
                     z_freq: np.ndarray, scales: np.ndarray) -> bytes:
    """First 8 bytes of SHA-256 over the config and every tensor, in key order."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for key in sorted(model_state):
        digest.update(key.encode())
        digest.update(model_state[key].detach().cpu().float().contiguous().numpy().tobytes())
    digest.update(np.ascontiguousarray(z_freq, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(scales, dtype="<f8").tobytes())
    return digest.digest()[:8]


def export_weights(net, path: Path, training: dict) -> str:
    """Write a weights file from a ``SICTrainable``; returns the model id in hex."""
    config = net.model.config
    model_state = {k: v.detach().cpu().float().clone() for k, v in net.model.state_dict().items()}
    z_freq = z_frequencies(net.z_prior)
    scales, offset = scale_table(config)
    model_id = compute_model_id(config, model_state, z_freq, scales)
    payload = {
        "format": WEIGHTS_FORMAT,
        "config": config.to_dict(),
        "model": model_state,
        "z_frequencies": torch.from_numpy(z_freq),
        "scale_table": torch.from_numpy(scales),
        "scale_offset": offset,
        "model_id": model_id.hex(),
        "training": json.dumps(training),
        "z_prior": {k: v.detach().cpu().clone() for k, v in net.z_prior.state_dict().items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return model_id.hex()


def load_weights(path: Path | None = None) -> ModelWeights:
    """Read and verify a weights file (the model id is recomputed, not trusted)."""
    path = Path(path) if path else default_weights_path()
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{path}: not a sicc weights file")
    config = ModelConfig.from_dict(payload["config"])
    z_freq = payload["z_frequencies"].numpy().astype(np.int64)
    scales = payload["scale_table"].numpy().astype(np.float64)
    model_id = compute_model_id(config, payload["model"], z_freq, scales)
    if model_id.hex() != payload["model_id"]:
        raise ValueError(f"{path}: weights do not match their model id (file damaged?)")
    return ModelWeights(
        config=config,
        model_state=payload["model"],
        z_frequencies=z_freq,
        scale_table=scales,
        scale_offset=int(payload["scale_offset"]),
        model_id=model_id,
        training=json.loads(payload.get("training", "{}")),
        z_prior_state=payload.get("z_prior", {}),
    )


def load_trainable(path: Path):
    """A ``SICTrainable`` initialised from a weights file, to continue training."""
    from ..train.objective import SICTrainable

    weights = load_weights(path)
    net = SICTrainable(weights.config)
    net.model.load_state_dict(weights.model_state)
    net.z_prior.load_state_dict(weights.z_prior_state)
    return net


def summarize_logs(paths: list[Path]) -> dict:
    """Steps, hours and the final loss terms of the training logs behind a weights file."""
    runs = []
    for path in paths:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        if not rows:
            continue
        last = rows[-100:]
        mean = {k: sum(r[k] for r in last) / len(last) for k in ("loss", "full_bpp", "full_psnr", "full_lpips")}
        runs.append({
            "log": Path(path).name,
            "first_step": rows[0]["step"],
            "last_step": rows[-1]["step"],
            "hours": round(sum(r["seconds"] for r in rows) / 3600, 2),
            "final_100_steps_mean": {k: round(v, 4) for k, v in mean.items()},
        })
    return {"runs": runs}


LOG_KEYS = ("loss", "full_psnr", "full_bpp", "full_lpips", "level_bpp", "level_lpips", "consistency", "seconds")


def compact_log(paths: list[Path], every: int = 50) -> list[dict]:
    """Training logs averaged over windows of ``every`` steps: small enough to commit."""
    rows = []
    for path in paths:
        rows += [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    out = []
    for start in range(0, len(rows), every):
        window = rows[start : start + every]
        entry = {"step": window[-1]["step"]}
        entry.update({k: round(sum(r[k] for r in window) / len(window), 4) for k in LOG_KEYS})
        out.append(entry)
    return out
