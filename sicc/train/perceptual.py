"""LPIPS-alex (v0.1), the perceptual term of the training loss, and DISTS, in plain torch.

Built from two local files in the metric-weights folder (``../shared/data/weights``
or ``$SICC_METRIC_WEIGHTS``): the AlexNet conv weights (``alexnet_features.pth``,
torchvision layout) and the LPIPS calibration layers (``lpips_v0.1/alex.pth``).
No ``lpips`` package and no download, so the same code runs on a GPU machine
that has only torch. ``tests/test_train_fast.py`` checks it against the
``lpips`` package where that is installed.

Under bf16 autocast the convolutions run in bf16 and the feature normalisation
in float32.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# (in, out, kernel, stride, padding) of AlexNet's five conv layers; a 3x3/2 max pool
# precedes layers 2 and 3. LPIPS taps the ReLU output of every layer.
_ALEX_CONVS = ((3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1))
_ALEX_FEATURE_INDEX = (0, 3, 6, 8, 10)  # their index in torchvision's ``alexnet().features``
_POOL_BEFORE = (False, True, True, False, False)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

BACKBONE_FILE = "alexnet_features.pth"
CALIBRATION_FILE = "lpips_v0.1/alex.pth"

# VGG16's thirteen 3x3 conv layers (in, out), grouped in the five stages DISTS taps (the ReLU output of
# each stage's last conv); an L2 pool (:func:`l2_pool`) replaces VGG's max pool before stages 2-5.
_VGG_STAGES = (((3, 64), (64, 64)), ((64, 128), (128, 128)), ((128, 256), (256, 256), (256, 256)),
               ((256, 512), (512, 512), (512, 512)), ((512, 512), (512, 512), (512, 512)))
_VGG_FEATURE_INDEX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # in torchvision's ``vgg16().features``
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)
"""Channels of the six maps DISTS compares: the image itself and the five VGG16 stages."""

DISTS_BACKBONE_FILE = "vgg16_features_fp16.pth"
DISTS_WEIGHTS_FILE = "dists_alpha_beta.pt"
METRIC_FILES = (BACKBONE_FILE, CALIBRATION_FILE, DISTS_BACKBONE_FILE, DISTS_WEIGHTS_FILE)
"""Every file of the metric-weights folder that training reads (LPIPS-alex, then DISTS)."""


def metric_weights_dir() -> Path:
    """Where the metric weights live: $SICC_METRIC_WEIGHTS or ../shared/data/weights."""
    env = os.environ.get("SICC_METRIC_WEIGHTS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data" / "weights"


class LPIPSAlex(nn.Module):
    """LPIPS v0.1 with the AlexNet backbone; inputs in [-1, 1], output (N,) distances."""

    def __init__(self, weights_dir: Path | None = None):
        super().__init__()
        weights_dir = Path(weights_dir or metric_weights_dir())
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, stride=s, padding=p) for i, o, k, s, p in _ALEX_CONVS)
        self.lins = nn.ModuleList(nn.Conv2d(o, 1, 1, bias=False) for _, o, *_ in _ALEX_CONVS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self._load(weights_dir)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def _load(self, weights_dir: Path) -> None:
        backbone, calibration = weights_dir / BACKBONE_FILE, weights_dir / CALIBRATION_FILE
        for f in (backbone, calibration):
            if not f.is_file():
                raise FileNotFoundError(f"LPIPS weights not found: {f} (set SICC_METRIC_WEIGHTS)")
        features = torch.load(backbone, map_location="cpu", weights_only=True)
        lins = torch.load(calibration, map_location="cpu", weights_only=True)
        with torch.no_grad():
            for conv, index in zip(self.convs, _ALEX_FEATURE_INDEX):
                conv.weight.copy_(features[f"features.{index}.weight"].float())
                conv.bias.copy_(features[f"features.{index}.bias"].float())
            for k, lin in enumerate(self.lins):
                lin.weight.copy_(lins[f"lin{k}.model.1.weight"].float())

    def train(self, mode: bool = True) -> "LPIPSAlex":
        return super().train(False)  # frozen metric: always in eval mode

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, texture: bool = False):
        """LPIPS distances (N,); with ``texture``, also :func:`texture_distance` on the same
        features (the input and the five ReLU outputs), from the same forward pass."""
        n = x0.shape[0]
        h = (torch.cat([x0, x1]) - self.shift) / self.scale
        total = x0.new_zeros(n, dtype=torch.float32)
        stages = [h.float()] if texture else []
        for feature, lin in zip(alex_stages(h, self.convs), self.lins):
            f = feature.float()
            if texture:
                stages.append(f)
            f = f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            diff = (f[:n] - f[n:]).square()
            total = total + lin(diff).float().mean(dim=(1, 2, 3))
        if not texture:
            return total
        return total, torch.stack([texture_distance(f[:n], f[n:]) for f in stages]).mean(dim=0)


def alex_stages(h: torch.Tensor, convs):
    """AlexNet's stages as LPIPS taps them: the ReLU output of each of ``convs`` in turn (the first ones
    of :data:`_ALEX_CONVS`, max-pooled where AlexNet pools), from a normalised input ``h``."""
    for conv, pool in zip(convs, _POOL_BEFORE):
        if pool:
            h = F.max_pool2d(h, 3, 2)
        h = F.relu(conv(h))
        yield h


def texture_distance(f0: torch.Tensor, f1: torch.Tensor, c: float = 1e-6) -> torch.Tensor:
    """DISTS' comparison of two feature maps (Ding et al. 2020), unweighted: per channel, the
    "texture" term compares global means, ``(2 m0 m1 + c) / (m0^2 + m1^2 + c)``, and the
    "structure" term the global (co)variances, ``(2 cov + c) / (var0 + var1 + c)``. Returns
    ``1 - mean((texture + structure) / 2)`` per image: 0 for equal maps, up to 1 (or a little more
    for anti-correlated ones). DISTS learns per-channel weights on VGG16; this is the same
    comparison with equal weights on the features LPIPS-alex computes anyway: no extra network
    pass, only per-channel statistics."""
    m0, m1 = f0.mean(dim=(2, 3), keepdim=True), f1.mean(dim=(2, 3), keepdim=True)
    d0, d1 = f0 - m0, f1 - m1
    var0, var1 = d0.square().mean(dim=(2, 3)), d1.square().mean(dim=(2, 3))
    cov = (d0 * d1).mean(dim=(2, 3))
    m0, m1 = m0.flatten(2).squeeze(2), m1.flatten(2).squeeze(2)
    texture = (2 * m0 * m1 + c) / (m0.square() + m1.square() + c)
    structure = (2 * cov + c) / (var0 + var1 + c)
    return 1 - 0.5 * (texture + structure).mean(dim=1)


class DISTSVGG(nn.Module):
    """DISTS (Ding et al. 2020, "Image quality assessment: unifying structure and texture
    similarity") in plain torch: VGG16's conv layers with L2 pooling, compared by per-channel
    global statistics weighted by the learned alpha/beta. Inputs are RGB in [0, 1].

    Built from two local files in the metric-weights folder: ``vgg16_features_fp16.pth``
    (torchvision layout) and ``dists_alpha_beta.pt``. No ``DISTS_pytorch`` or ``torchvision``,
    so the same code runs on a GPU machine that has only torch; the benchmark scores with the
    ``DISTS_pytorch`` package (``sicc.bench.metrics``) and ``tests/test_train_dists.py`` checks
    the two agree. Frozen and always in eval mode.
    """

    def __init__(self, weights_dir: Path | None = None):
        super().__init__()
        weights_dir = Path(weights_dir or metric_weights_dir())
        self.stages = nn.ModuleList(nn.ModuleList(nn.Conv2d(i, o, 3, padding=1) for i, o in stage)
                                    for stage in _VGG_STAGES)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        total = sum(DISTS_CHANNELS)
        self.register_buffer("alpha", torch.zeros(1, total, 1, 1), persistent=False)
        self.register_buffer("beta", torch.zeros(1, total, 1, 1), persistent=False)
        self._load(weights_dir)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def _load(self, weights_dir: Path) -> None:
        backbone, alpha_beta = weights_dir / DISTS_BACKBONE_FILE, weights_dir / DISTS_WEIGHTS_FILE
        for f in (backbone, alpha_beta):
            if not f.is_file():
                raise FileNotFoundError(f"DISTS weights not found: {f} (set SICC_METRIC_WEIGHTS)")
        features = torch.load(backbone, map_location="cpu", weights_only=True)
        convs = [conv for stage in self.stages for conv in stage]
        wanted = {f"features.{i}.{name}" for i in _VGG_FEATURE_INDEX for name in ("weight", "bias")}
        if set(features) != wanted:
            raise RuntimeError(f"{backbone}: not VGG16's conv layers (missing {sorted(wanted - set(features))}, "
                               f"unused {sorted(set(features) - wanted)})")
        weights = torch.load(alpha_beta, map_location="cpu", weights_only=True)
        with torch.no_grad():
            for conv, index in zip(convs, _VGG_FEATURE_INDEX):
                conv.weight.copy_(features[f"features.{index}.weight"].float())
                conv.bias.copy_(features[f"features.{index}.bias"].float())
            self.alpha.copy_(weights["alpha"].float().reshape(self.alpha.shape))
            self.beta.copy_(weights["beta"].float().reshape(self.beta.shape))

    def train(self, mode: bool = True) -> "DISTSVGG":
        return super().train(False)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six maps DISTS compares: ``x`` itself and the ReLU output of each VGG16 stage
        (gradients flow to ``x``)."""
        maps = [x]
        h = (x - self.mean) / self.std
        for k, stage in enumerate(self.stages):
            if k:
                h = l2_pool(h)
            for conv in stage:
                h = F.relu(conv(h))
            maps.append(h)
        return maps

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`feature_maps` without gradients (a reference image's, computed once)."""
        with torch.no_grad():
            return self.feature_maps(x)

    def distance(self, feats0: list[torch.Tensor], feats1: list[torch.Tensor], c: float = 1e-6) -> torch.Tensor:
        """DISTS (N,) between two images' :meth:`feature_maps`: 1 minus the alpha-weighted sum of
        the per-channel mean ("texture") similarities plus the beta-weighted sum of the covariance
        ("structure") similarities, the weights normalised to sum to 1."""
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, DISTS_CHANNELS, dim=1)
        betas = torch.split(self.beta / total, DISTS_CHANNELS, dim=1)
        similarity = 0
        for f0, f1, alpha, beta in zip(feats0, feats1, alphas, betas):
            m0, m1 = f0.mean([2, 3], keepdim=True), f1.mean([2, 3], keepdim=True)
            texture = (2 * m0 * m1 + c) / (m0.square() + m1.square() + c)
            var0 = (f0 - m0).square().mean([2, 3], keepdim=True)
            var1 = (f1 - m1).square().mean([2, 3], keepdim=True)
            cov = (f0 * f1).mean([2, 3], keepdim=True) - m0 * m1
            structure = (2 * cov + c) / (var0 + var1 + c)
            similarity = similarity + (alpha * texture).sum(1) + (beta * structure).sum(1)
        return (1 - similarity).flatten()

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        return self.distance(self.feature_maps(x0), self.feature_maps(x1))


def l2_pool(h: torch.Tensor) -> torch.Tensor:
    """DISTS' replacement for VGG's max pool: the root of a 3x3 Hann-weighted mean of squares
    ([1, 2, 1] x [1, 2, 1] / 16), stride 2, padding 1, per channel."""
    taps = torch.tensor([0.5, 1.0, 0.5], dtype=h.dtype, device=h.device)
    window = torch.outer(taps, taps) / 4.0
    channels = h.shape[1]
    pooled = F.conv2d(h.square(), window.expand(channels, 1, 3, 3), stride=2, padding=1, groups=channels)
    return (pooled + 1e-12).sqrt()


class LPIPSLoss(nn.Module):
    """LPIPS-alex on images in [0, 1], averaged over the batch."""

    def __init__(self, weights_dir: Path | None = None):
        super().__init__()
        self.metric = LPIPSAlex(weights_dir)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor, texture: bool = False):
        """The mean LPIPS; with ``texture``, the pair (LPIPS, texture distance), both means."""
        out = self.metric(x_hat * 2 - 1, x * 2 - 1, texture=texture)
        if texture:
            return out[0].mean(), out[1].mean()
        return out.mean()


# -- the benchmark's reference metric ------------------------------------------------------
_LPIPS_SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))


def _alex_slice_key(feature_key: str) -> str:
    """Map torchvision's ``features.N.weight`` to lpips' ``net.sliceK.N.weight``."""
    _, index, name = feature_key.split(".")
    i = int(index)
    k = next(s for s, (lo, hi) in enumerate(_LPIPS_SLICES, 1) if lo <= i < hi)
    return f"net.slice{k}.{i}.{name}"


def load_lpips_alex(weights_dir: Path | None = None) -> nn.Module:
    """The ``lpips`` package's ``LPIPS(net='alex')`` with every weight loaded from local files
    (eval, frozen): the benchmark measures with the reference implementation."""
    import warnings

    import lpips

    weights_dir = Path(weights_dir or metric_weights_dir())
    backbone_file = weights_dir / BACKBONE_FILE
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
