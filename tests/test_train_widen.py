"""Widening a trained network (sicc.train.widen, ``python -m sicc.train run --hidden N``): more
hidden channels, the same function, and the new channels free to learn."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import TORCH_MISSING  # noqa: E402
pytest.importorskip("torch", reason=TORCH_MISSING)

import torch

from sicc.model.config import TINY
from sicc.train.objective import SICTrainable
from sicc.train.widen import widen


def _trained_like(seed: int = 0) -> SICTrainable:
    """A tiny network whose every parameter is perturbed, so that no zero or identity of the
    initialisation (GDN's diagonal gamma, zero biases) hides a channel that leaks."""
    torch.manual_seed(seed)
    net = SICTrainable(TINY)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def _outputs(net: SICTrainable, x: torch.Tensor) -> dict[str, torch.Tensor]:
    m = net.model
    y = m.g_a(x)
    z = m.h_a(y)
    hyper = m.h_s(torch.round(z))
    return {"y": y, "z": z, "hyper": hyper, "x_hat": m.g_s(torch.round(y)),
            "params": m.entropy_parameters(torch.round(y), hyper)[0]}


def test_a_widened_network_computes_the_same_function():
    net = _trained_like()
    wide = widen(net, TINY.hidden + 5, seed=3)
    assert wide.config.hidden == TINY.hidden + 5
    assert wide.model.g_s[0].weight.shape[1] == TINY.hidden + 5
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in net.parameters())
    x = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before, after = _outputs(net, x), _outputs(wide, x)
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=1e-5, atol=1e-5, msg=name)
    for key, value in net.z_prior.state_dict().items():
        assert torch.equal(wide.z_prior.state_dict()[key], value), key


def test_the_new_channels_learn():
    wide = widen(_trained_like(), TINY.hidden + 4)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    loss = (wide.model.g_s(wide.model.g_a(x)) - x).square().mean()
    loss.backward()
    last = wide.model.g_s[-1].weight  # ConvTranspose2d (in, out, k, k): rows of new channels are zero
    assert torch.count_nonzero(last[TINY.hidden:]) == 0
    assert torch.count_nonzero(last.grad[TINY.hidden:]) > 0


def test_widening_is_reproducible_and_never_narrows():
    net = _trained_like()
    a, b = widen(net, TINY.hidden + 2, seed=5), widen(net, TINY.hidden + 2, seed=5)
    for (key, u), v in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(u, v), key
    assert widen(net, TINY.hidden).config == net.config
    with pytest.raises(ValueError, match="cannot narrow"):
        widen(net, TINY.hidden - 1)


def test_the_training_command_widens_its_initial_weights_and_the_export_decodes(tmp_path, small_image):
    from sicc.codec import Codec
    from sicc.train.__main__ import _build_parser, _initial_net
    from sicc.train.export import export_weights

    narrow_path = tmp_path / "narrow.npz"
    torch.manual_seed(0)
    export_weights(SICTrainable(TINY), narrow_path, {"note": "test"})
    args = _build_parser().parse_args(["run", "--init", str(narrow_path), "--hidden", str(TINY.hidden + 8)])
    wide = _initial_net(args)
    assert wide.config.hidden == TINY.hidden + 8
    wide_path = tmp_path / "wide.npz"
    export_weights(wide, wide_path, {"note": "test"})

    narrow_codec, wide_codec = Codec.load(narrow_path), Codec.load(wide_path)
    assert wide_codec.model_id != narrow_codec.model_id
    narrow_pixels = np.asarray(narrow_codec.decode(narrow_codec.encode(small_image))[0])
    wide_pixels = np.asarray(wide_codec.decode(wide_codec.encode(small_image))[0])
    difference = np.abs(narrow_pixels.astype(int) - wide_pixels.astype(int))
    assert difference.mean() < 0.05 and difference.max() <= 2

    too_narrow = _build_parser().parse_args(["run", "--init", str(wide_path), "--hidden", str(TINY.hidden)])
    with pytest.raises(SystemExit, match="cannot narrow"):
        _initial_net(too_narrow)


def test_resume_refuses_another_width(tmp_path):
    from sicc.train.__main__ import _build_parser, _cmd_run
    from sicc.train.loop import run
    from tests.test_train_fast import _budget_trainer

    trainer = _budget_trainer(steps=1)
    run(trainer, tmp_path / "c.pt", tmp_path / "c.jsonl", progress=False)
    args = _build_parser().parse_args(["run", "--resume", str(tmp_path / "c.pt"), "--hidden", str(TINY.hidden + 4)])
    with pytest.raises(SystemExit, match="start a new run with --init CHECKPOINT --hidden"):
        _cmd_run(args)
