"""DISTS itself in the training objective (``run --dists W``; sicc.train.objective): the level branch's decode
is scored on its centre window by DISTS (``sicc.train.perceptual.DISTSVGG``, plain torch, checked here
against the benchmark's ``DISTS_pytorch``), weighted like LPIPS; the reference's
features carry no gradient, the decode's do; the weight is a recorded run setting. Tiny model, and a
stand-in network with DISTS' interface, except where the real one is checked against the benchmark."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sicc.model.config import TINY
from sicc.train.objective import DISTS_WINDOW, LossSettings, SICTrainable, dists_window, level_lambdas, sic_loss
from tests.conftest import SHARED
from tests.test_train_fast import _L1Perceptual


class _MeanDISTS(nn.Module):
    """DISTS' interface (features, feature_maps, distance) on one "feature": the image itself; the
    distance is the mean absolute difference of the per-image channel means, plus 0.1."""

    def __init__(self):
        super().__init__()
        self.sides = []

    def feature_maps(self, x):
        self.sides.append(tuple(x.shape[-2:]))
        return [x]

    def features(self, x):
        with torch.no_grad():
            return self.feature_maps(x)

    def distance(self, f0, f1):
        return (f0[0].mean(dim=(2, 3)) - f1[0].mean(dim=(2, 3))).abs().mean(dim=1) + 0.1


def test_the_window_is_the_centre_and_never_larger_than_the_image():
    x = torch.arange(2 * 3 * 300 * 260, dtype=torch.float32).reshape(2, 3, 300, 260)
    w = dists_window(x)
    assert w.shape == (2, 3, DISTS_WINDOW, DISTS_WINDOW)
    top, left = (300 - DISTS_WINDOW) // 2, (260 - DISTS_WINDOW) // 2
    assert torch.equal(w, x[..., top:top + DISTS_WINDOW, left:left + DISTS_WINDOW])
    small = torch.rand(1, 3, 64, 40)
    assert torch.equal(dists_window(small), small)


def test_the_dists_weight_adds_lambda_p_times_dists_to_the_level_branch_only():
    """loss(w) - loss(0) = 0.5 * w * lambda_p(l) * DISTS(level decode) for the same draws; the full branch
    and every other term are untouched; without a network the weight does nothing."""
    torch.manual_seed(0)
    net, x, level = SICTrainable(TINY), torch.rand(2, 3, 192, 192), 5
    judge = _MeanDISTS()

    def loss(settings, dists=judge):
        return sic_loss(net, _L1Perceptual(), x, level, settings, torch.Generator().manual_seed(1), dists=dists)

    with torch.no_grad():
        base, base_terms = loss(LossSettings())
        weighted, terms = loss(LossSettings(dists=0.75))
        unjudged, unjudged_terms = loss(LossSettings(dists=0.75), dists=None)
    assert "level_dists" not in base_terms and "level_dists" not in unjudged_terms
    assert unjudged.item() == pytest.approx(base.item(), rel=1e-6)
    assert terms["level_dists"] > 0.1
    for key in ("full_lpips", "full_mse", "level_lpips", "level_mse"):
        assert terms[key] == pytest.approx(base_terms[key], rel=1e-6)
    lam_p = level_lambdas(level, TINY.levels)[1]
    assert (weighted - base).item() == pytest.approx(0.5 * 0.75 * lam_p * terms["level_dists"], rel=1e-4)
    # the reference once (no gradient), then the decode: both on the centre window
    assert judge.sides[-2:] == [(DISTS_WINDOW, DISTS_WINDOW)] * 2


def test_the_dists_term_trains_g_s_through_the_decode():
    torch.manual_seed(0)
    net, x = SICTrainable(TINY), torch.rand(2, 3, 64, 64)
    settings = LossSettings(decoder_only=True, dists=1.0, full_weight=0.0, low_mse=0.0)

    def g_s_gradient(weight):
        net.zero_grad(set_to_none=True)
        s = LossSettings(**{**settings.__dict__, "dists": weight})
        value, _ = sic_loss(net, _L1Perceptual(), x, 3, s, torch.Generator().manual_seed(1), dists=_MeanDISTS())
        value.backward()
        return torch.cat([p.grad.flatten() for p in net.model.g_s.parameters() if p.grad is not None])

    assert not torch.allclose(g_s_gradient(1.0), g_s_gradient(0.0))


_VGG_WEIGHTS = SHARED / "weights" / "vgg16_features_fp16.pth"


@pytest.mark.skipif(not _VGG_WEIGHTS.is_file(), reason="metric weights absent")
def test_the_trained_term_is_the_benchmarks_dists_with_a_gradient():
    """What the objective computes (the reference's features, then the decode's with a gradient, both
    channels_last as the trainer holds the network) is the benchmark's DISTS (the DISTS_pytorch
    package) of the two images, on noise, on a smooth image and on an odd size; and the gradient
    reaches the decode's pixels."""
    pytest.importorskip("DISTS_pytorch")
    from sicc.bench.metrics import build_dists
    from sicc.train.perceptual import DISTSVGG

    judge = build_dists()
    dists = DISTSVGG().to(memory_format=torch.channels_last)
    torch.manual_seed(0)
    ramp = torch.linspace(0, 1, 72).view(1, 1, 1, 72).expand(1, 3, 56, 72)
    for x in (torch.rand(2, 3, 64, 64), ramp.contiguous()):
        for noise in (0.02, 0.1, 0.3):
            y = (x + noise * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
            last = (lambda t: t.contiguous(memory_format=torch.channels_last))
            trained = dists.distance(dists.features(last(x)), dists.feature_maps(last(y)))
            scored = judge.distance(judge.features(x), judge.features(y.detach()))
            assert np.allclose(trained.detach().numpy(), scored.numpy(), atol=2e-6), (noise, trained, scored)
            assert float(scored.min()) > 0.003  # a real distance, not two zeros
    trained.sum().backward()
    assert torch.isfinite(y.grad).all() and float(y.grad.abs().max()) > 0
    same = dists(x, x.clone())
    assert float(same.abs().max()) < 1e-5


def test_the_trained_dists_needs_its_files_and_nothing_else(tmp_path):
    """A missing file is a clear error naming it; a backbone that is not VGG16's conv layers is refused
    (nothing may stay random); and the module never imports DISTS_pytorch or torchvision."""
    import subprocess
    import sys

    from sicc.train.perceptual import DISTSVGG

    with pytest.raises(FileNotFoundError, match="vgg16_features_fp16.pth"):
        DISTSVGG(tmp_path)
    if not _VGG_WEIGHTS.is_file():
        pytest.skip("metric weights absent")
    import shutil

    shutil.copyfile(SHARED / "weights" / "dists_alpha_beta.pt", tmp_path / "dists_alpha_beta.pt")
    features = torch.load(_VGG_WEIGHTS, map_location="cpu", weights_only=True)
    del features["features.28.bias"]
    torch.save(features, tmp_path / "vgg16_features_fp16.pth")
    with pytest.raises(RuntimeError, match="features.28.bias"):
        DISTSVGG(tmp_path)
    code = ("import sys\nfrom sicc.train.perceptual import DISTSVGG\nDISTSVGG()\n"
            "bad = [m for m in ('DISTS_pytorch', 'torchvision') if m in sys.modules]\nassert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "SICC_METRIC_WEIGHTS": str(SHARED / "weights")})
    assert proc.returncode == 0, proc.stderr


def test_the_run_command_records_the_dists_weight(tmp_path, monkeypatch):
    from sicc.train import __main__ as cli

    seen = {}

    def fake_run(trainer, checkpoint, log_path, **kw):
        seen.update(weight=trainer.settings.loss.dists, network=trainer.dists is not None,
                    levels=trainer.settings.loss.dists_levels)
        trainer.save_checkpoint(checkpoint)
        return {"stopped": "steps"}

    monkeypatch.setattr(cli, "run", fake_run)
    monkeypatch.setattr(cli, "load_folder", lambda *a, **k: [np.zeros((64, 64, 3), np.uint8)])
    monkeypatch.setattr("sicc.train.perceptual.LPIPSLoss", _L1Perceptual)
    monkeypatch.setattr("sicc.train.perceptual.DISTSVGG", _MeanDISTS)
    common = ["--init", "scratch", "--config", "tiny", "--batch", "2", "--crop", "64", "--steps", "1"]
    cli.main(["run", *common, "--dists", "1.5", "--dists-levels", "8", "--out", str(tmp_path / "a")])
    assert seen == {"weight": 1.5, "network": True, "levels": 8}
    cli.main(["run", "--resume", str(tmp_path / "a" / "checkpoint.pt"), "--steps", "2"])
    assert seen == {"weight": 1.5, "network": True, "levels": 8}
    cli.main(["run", *common, "--out", str(tmp_path / "b")])
    assert seen == {"weight": 0.0, "network": False, "levels": 0}
    with pytest.raises(SystemExit, match="dists"):
        cli.main(["run", *common, "--dists", "-1", "--out", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="dists-levels"):
        cli.main(["run", *common, "--dists", "1", "--dists-levels", "-2", "--out", str(tmp_path / "d")])


def test_dists_levels_keeps_the_term_to_the_low_levels():
    """With dists_levels N, a step at a level above N runs no VGG pass and its loss is the loss
    without the term; a step at N or below is judged as without the limit."""
    torch.manual_seed(0)
    net, x = SICTrainable(TINY), torch.rand(1, 3, 64, 64)

    def loss(level, settings):
        judge = _MeanDISTS()
        value, terms = sic_loss(net, _L1Perceptual(), x, level, settings, torch.Generator().manual_seed(1),
                                dists=judge)
        return value.item(), terms, len(judge.sides)

    with torch.no_grad():
        for level, judged in ((2, True), (3, True), (4, False), (TINY.levels, False)):
            limited = loss(level, LossSettings(dists=1.0, dists_levels=3))
            everywhere = loss(level, LossSettings(dists=1.0))
            plain = loss(level, LossSettings())
            assert everywhere[2] == 2 and ("level_dists" in everywhere[1])
            if judged:
                assert limited[2] == 2 and limited[0] == pytest.approx(everywhere[0], rel=1e-6)
            else:
                assert limited[2] == 0 and "level_dists" not in limited[1]
                assert limited[0] == pytest.approx(plain[0], rel=1e-6)
                assert everywhere[0] > plain[0]
