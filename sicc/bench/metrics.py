"""Image-quality metrics of the benchmark: PSNR, MS-SSIM, LPIPS-alex and DISTS.

Everything is built offline from ``shared/data/weights`` (no download at run
time). The reference image's DISTS features are computed once per image and
reused for every decoded candidate: the VGG16 pass dominates the metric cost.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from DISTS_pytorch import DISTS
from PIL import Image
from torch import nn

from ..train.perceptual import load_lpips_alex, metric_weights_dir

METRICS = ("psnr", "ms_ssim", "lpips", "dists")
"""Metric names as they appear in results.json."""

LOWER_IS_BETTER = {"psnr": False, "ms_ssim": False, "lpips": True, "dists": True}

MS_SSIM_MIN_SIDE = 161
"""pytorch_msssim needs each side > (win_size - 1) * 2**4 = 160 px at 5 scales."""


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB image -> float tensor (1, 3, H, W) in [0, 1]."""
    array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB on 8-bit RGB values (inputs are 8-bit images scaled to [0, 1])."""
    mse = torch.mean((a - b) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def build_dists(weights_dir: Path | None = None) -> "OfflineDISTS":
    """DISTS with VGG16 and alpha/beta loaded from local files; eval mode, frozen."""
    return OfflineDISTS(weights_dir)


def _untrained_vgg16_features() -> nn.Module:
    """An object with VGG16's ``.features`` (random weights), skipping the 120M-parameter classifier."""
    try:
        from torchvision.models.vgg import cfgs, make_layers

        return SimpleNamespace(features=make_layers(cfgs["D"], batch_norm=False))
    except ImportError:  # torchvision internals moved: build the whole (slower) network
        import torchvision

        return torchvision.models.vgg16(weights=None)


class OfflineDISTS(DISTS):
    """DISTS_pytorch.DISTS without its ``vgg16(pretrained=True)`` download.

    The parent constructor is run with torchvision's ``vgg16`` swapped for an
    untrained one (no download), then every VGG conv layer is overwritten from
    ``vgg16_features_fp16.pth`` and alpha/beta from ``dists_alpha_beta.pt``.
    ``load_report`` lists what was loaded so tests can check nothing stayed random.
    """

    def __init__(self, weights_dir: Path | None = None):
        import DISTS_pytorch.DISTS_pt as dists_module

        weights_dir = Path(weights_dir or metric_weights_dir())
        backbone_file = weights_dir / "vgg16_features_fp16.pth"
        alpha_beta_file = weights_dir / "dists_alpha_beta.pt"
        for f in (backbone_file, alpha_beta_file):
            if not f.is_file():
                raise FileNotFoundError(f"DISTS weights not found: {f} (set SICC_METRIC_WEIGHTS)")

        original = dists_module.models.vgg16  # the same object as torchvision.models.vgg16
        dists_module.models.vgg16 = lambda *args, **kwargs: _untrained_vgg16_features()
        try:
            super().__init__(load_weights=False)
        finally:
            dists_module.models.vgg16 = original

        self.load_report = self._load_backbone(backbone_file)
        alpha_beta = torch.load(alpha_beta_file, map_location="cpu", weights_only=True)
        self.alpha.data = alpha_beta["alpha"].float().reshape(self.alpha.shape)
        self.beta.data = alpha_beta["beta"].float().reshape(self.beta.shape)
        self.load_report["alpha_beta"] = ["alpha", "beta"]
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        # channels_last: oneDNN's faster convolution layout (VGG features of a Kodak image 2.7 -> 2.2 s
        # on 2 AVX2 cores; DISTS differs in the 7th decimal). The bench scores ~800 decodes a run.
        self.to(memory_format=torch.channels_last)

    def _load_backbone(self, backbone_file: Path) -> dict[str, list[str]]:
        """Copy ``features.N.*`` into ``stageK.N.*``; fail on any missing or unused tensor."""
        features = torch.load(backbone_file, map_location="cpu", weights_only=True)
        by_index = {}
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4, self.stage5):
            for name, module in stage.named_children():
                by_index[name] = module
        targets = {
            f"features.{index}.{pname}": param
            for index, module in by_index.items()
            if isinstance(module, nn.Conv2d)
            for pname, param in module.named_parameters(recurse=False)
        }
        missing = sorted(set(targets) - set(features))
        unused = sorted(set(features) - set(targets))
        if missing or unused:
            raise RuntimeError(f"VGG16 weights do not match DISTS: missing {missing}, unused {unused}")
        for key, param in targets.items():
            source = features[key]
            if source.shape != param.shape:
                raise RuntimeError(f"{key}: shape {tuple(source.shape)} != {tuple(param.shape)}")
            param.data.copy_(source.float())
        return {"backbone": sorted(targets)}

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six feature maps DISTS compares (input image + 5 VGG stages)."""
        with torch.no_grad():
            return self.forward_once(x.contiguous(memory_format=torch.channels_last))

    def distance(self, feats0: list[torch.Tensor], feats1: list[torch.Tensor]) -> torch.Tensor:
        """DISTS from precomputed features; the same arithmetic as DISTS_pytorch's forward."""
        c1 = c2 = 1e-6
        w_sum = self.alpha.sum() + self.beta.sum()
        alpha = torch.split(self.alpha / w_sum, self.chns, dim=1)
        beta = torch.split(self.beta / w_sum, self.chns, dim=1)
        dist1 = dist2 = 0
        for k in range(len(self.chns)):
            x_mean = feats0[k].mean([2, 3], keepdim=True)
            y_mean = feats1[k].mean([2, 3], keepdim=True)
            s1 = (2 * x_mean * y_mean + c1) / (x_mean**2 + y_mean**2 + c1)
            dist1 = dist1 + (alpha[k] * s1).sum(1, keepdim=True)
            x_var = ((feats0[k] - x_mean) ** 2).mean([2, 3], keepdim=True)
            y_var = ((feats1[k] - y_mean) ** 2).mean([2, 3], keepdim=True)
            xy_cov = (feats0[k] * feats1[k]).mean([2, 3], keepdim=True) - x_mean * y_mean
            s2 = (2 * xy_cov + c2) / (x_var + y_var + c2)
            dist2 = dist2 + (beta[k] * s2).sum(1, keepdim=True)
        return (1 - (dist1 + dist2)).flatten()


@dataclass
class Reference:
    """An original image with what every comparison against it reuses."""

    tensor: torch.Tensor
    dists_features: list[torch.Tensor]

    @property
    def pixels(self) -> int:
        return int(self.tensor.shape[-1] * self.tensor.shape[-2])


class Metrics:
    """All four metrics on PIL images, with cached reference features."""

    def __init__(self, device: str = "cpu", weights_dir: Path | None = None):
        self.device = torch.device(device)
        self.lpips = load_lpips_alex(weights_dir).to(self.device)
        self.dists = build_dists(weights_dir).to(self.device)

    def reference(self, img: Image.Image) -> Reference:
        x = to_tensor(img).to(self.device)
        return Reference(x, self.dists.features(x))

    @torch.no_grad()
    def compare(self, ref: Reference, img: Image.Image) -> dict[str, float]:
        """PSNR / MS-SSIM / LPIPS-alex / DISTS of ``img`` against the reference."""
        y = to_tensor(img).to(self.device)
        if y.shape != ref.tensor.shape:
            raise ValueError(f"decoded size {tuple(y.shape)} != original {tuple(ref.tensor.shape)}")
        return {
            "psnr": psnr(ref.tensor, y),
            "ms_ssim": ms_ssim(ref.tensor, y),
            "lpips": self.lpips_pair(ref.tensor, y),
            "dists": float(self.dists.distance(ref.dists_features, self.dists.features(y))[0]),
        }

    @torch.no_grad()
    def lpips_pair(self, a: torch.Tensor, b: torch.Tensor) -> float:
        """LPIPS-alex between two [0, 1] tensors (the lpips module wants [-1, 1])."""
        return float(self.lpips(a * 2 - 1, b * 2 - 1).flatten()[0])

    def lpips_images(self, a: Image.Image, b: Image.Image) -> float:
        return self.lpips_pair(to_tensor(a).to(self.device), to_tensor(b).to(self.device))


def ms_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """MS-SSIM (5 scales, data range 1); NaN when the image is too small for 5 scales."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(a.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(_ms_ssim(a, b, data_range=1.0))
