"""LPIPS-alex built offline from the backbone weights in shared/data/weights.

The ``lpips`` package would download AlexNet through torchvision; here the
network is built with random weights and the ImageNet conv weights are loaded
from ``alexnet_features.pth`` (torchvision layout). The calibration layers
come from the ``lpips`` wheel itself.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

_ALEX_SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))


def metric_weights_dir() -> Path:
    """Where the metric backbones live: $SICC_METRIC_WEIGHTS or ../shared/data/weights."""
    env = os.environ.get("SICC_METRIC_WEIGHTS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data" / "weights"


def _alex_slice_key(feature_key: str) -> str:
    """Map torchvision's ``features.N.weight`` to lpips' ``net.sliceK.N.weight``."""
    _, index, name = feature_key.split(".")
    i = int(index)
    k = next(s for s, (lo, hi) in enumerate(_ALEX_SLICES, 1) if lo <= i < hi)
    return f"net.slice{k}.{i}.{name}"


def load_lpips_alex(weights_dir: Path | None = None) -> nn.Module:
    """An ``lpips.LPIPS(net='alex')`` with every weight loaded from local files; eval, frozen."""
    import lpips

    weights_dir = weights_dir or metric_weights_dir()
    backbone_file = weights_dir / "alexnet_features.pth"
    if not backbone_file.is_file():
        raise FileNotFoundError(f"LPIPS backbone not found: {backbone_file} (set SICC_METRIC_WEIGHTS)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    features = torch.load(backbone_file, map_location="cpu", weights_only=True)
    mapped = {_alex_slice_key(k): v.float() for k, v in features.items()}
    missing = set(k for k in metric.state_dict() if k.startswith("net.")) - set(mapped)
    if missing:
        raise RuntimeError(f"AlexNet weights incomplete, missing {sorted(missing)}")
    metric.load_state_dict(mapped, strict=False)
    metric.eval()
    for p in metric.parameters():
        p.requires_grad_(False)
    return metric


class LPIPSLoss(nn.Module):
    """LPIPS-alex on images in [0, 1], averaged over the batch."""

    def __init__(self, weights_dir: Path | None = None):
        super().__init__()
        self.metric = load_lpips_alex(weights_dir)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.metric(x_hat * 2 - 1, x * 2 - 1).mean()
