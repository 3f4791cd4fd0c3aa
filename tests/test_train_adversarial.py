"""The adversarial term (``run --adversarial W``; sicc.train.adversarial): the generator's term enters the
level branch weighted like LPIPS, a new discriminator warms up before it does, the discriminator learns
and lives in the checkpoint only (continued by --resume and --init, left out of exported weights), and
a decoder-only adversarial run still changes g_s and nothing else. Tiny model throughout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sicc.model.config import TINY
from sicc.model.weights import load_weights
from sicc.train.adversarial import (PatchDiscriminator, ProjectedDiscriminator, discriminator_loss, generator_loss,
                                    trainable)
from sicc.train.loop import Trainer, TrainSettings, load_checkpoint, run
from sicc.train.objective import LossSettings, SICTrainable, level_lambdas, sic_loss
from tests.test_train_fast import _L1Perceptual, _RandomCrops
from tests.test_train_level_film import changed_by_run


def _trainer(seed=0, loss=LossSettings(adversarial=0.5), **kw):
    torch.manual_seed(seed)
    kw.setdefault("adversarial_warmup", 2)
    settings = TrainSettings(lr=1e-3, seed=seed, checkpoint_every=10**6, loss=loss, **kw)
    return Trainer(SICTrainable(TINY), _RandomCrops(seed), _L1Perceptual(), settings)


def test_the_losses_reward_what_each_side_wants():
    real, fake = torch.full((2, 1, 4, 4), 3.0), torch.full((2, 1, 4, 4), -3.0)
    assert discriminator_loss(real, fake) < discriminator_loss(fake, real)
    assert generator_loss(real) < generator_loss(fake)  # a decode taken for a photo costs less
    assert PatchDiscriminator(8)(torch.rand(2, 3, 64, 64)).shape == (2, 1, 7, 7)


def test_the_generator_term_enters_the_level_branch_weighted_like_lpips():
    """loss(w) - loss(0) = 0.5 * w * lambda_p(l) * softplus(-D(x_level)) for the same draws (eval: spectral
    norm holds its power iteration still)."""
    torch.manual_seed(0)
    net, x, level, d = SICTrainable(TINY), torch.rand(2, 3, 64, 64), 5, PatchDiscriminator(8).eval()

    def loss(weight):
        fakes = []
        value, terms = sic_loss(net, _L1Perceptual(), x, level, LossSettings(adversarial=weight),
                                torch.Generator().manual_seed(1), discriminator=d, fakes=fakes)
        return value, terms, fakes

    with torch.no_grad():
        base, base_terms, _ = loss(0.0)
        weighted, terms, fakes = loss(0.75)
        expected = generator_loss(d(fakes[0]))
    assert "adversarial" not in base_terms and terms["adversarial"] == pytest.approx(expected.item(), rel=1e-5)
    lam_p = level_lambdas(level, TINY.levels)[1]
    assert (weighted - base).item() == pytest.approx(0.5 * 0.75 * lam_p * expected.item(), rel=1e-4)


def test_a_new_discriminator_warms_up_before_it_judges(tmp_path):
    trainer = _trainer(steps=4, adversarial_warmup=3)
    run(trainer, tmp_path / "a.pt", tmp_path / "a.jsonl", progress=False)
    lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert ["adversarial" in line for line in lines] == [False, False, False, True]
    assert all("d_loss" in line and np.isfinite(line["d_loss"]) for line in lines)
    assert trainer.discriminator_steps == 4


def test_a_decoder_only_adversarial_run_changes_g_s_differently_and_nothing_else(tmp_path):
    plain = _trainer(steps=4, loss=LossSettings(decoder_only=True))
    judged = _trainer(steps=4, loss=LossSettings(decoder_only=True, adversarial=2.0), adversarial_warmup=0)
    d_before = {k: v.clone() for k, v in judged.discriminator.state_dict().items()}
    changed = changed_by_run(judged, tmp_path / "j.pt")
    changed_by_run(plain, tmp_path / "p.pt")
    assert changed and all(k.startswith("model.g_s.") for k in changed)
    a, b = plain.net.state_dict(), judged.net.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in changed)  # the term moved g_s
    assert any(not torch.equal(d_before[k], v) for k, v in judged.discriminator.state_dict().items())


def test_a_projected_discriminator_learns_its_heads_on_frozen_lpips_features(tmp_path):
    trainer = _trainer(steps=3, discriminator="projected", adversarial_warmup=1)
    d = trainer.discriminator
    assert isinstance(d, ProjectedDiscriminator) and len(d(torch.rand(2, 3, 64, 64))) == 3
    backbone = {k: v.clone() for k, v in d.state_dict().items() if k.startswith("convs.")}
    heads = [p.detach().clone() for p in trainable(d)]
    assert backbone and heads and len(heads) < len(list(d.parameters()))
    run(trainer, tmp_path / "a.pt", tmp_path / "a.jsonl", progress=False)
    assert all(torch.equal(v, d.state_dict()[k]) for k, v in backbone.items())  # frozen
    assert any(not torch.equal(a, b) for a, b in zip(heads, trainable(d)))
    assert not any(p.requires_grad for k, p in d.named_parameters() if k.startswith("convs."))
    state = load_checkpoint(tmp_path / "a.pt")
    assert state["settings"]["discriminator"] == "projected"
    again = _trainer(seed=2, steps=4, discriminator="projected")
    again.load_state_dict(state)
    assert all(torch.equal(state["discriminator"][k], v) for k, v in again.discriminator.state_dict().items())
    with pytest.raises(ValueError, match="discriminator"):
        _trainer(discriminator="nonsense")


@pytest.mark.parametrize("how", ["continue", "resume"])
def test_the_checkpoint_keeps_the_discriminator_and_exports_leave_it_out(tmp_path, how):
    first = _trainer(steps=3)
    run(first, tmp_path / "a.pt", tmp_path / "a.jsonl", progress=False)
    state = load_checkpoint(tmp_path / "a.pt")
    assert state["discriminator_steps"] == 3 and state["settings"]["adversarial"] == 0.5
    second = _trainer(seed=4, steps=6)
    (second.continue_from if how == "continue" else second.load_state_dict)(state)
    saved, loaded = state["discriminator"], second.discriminator.state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert second.discriminator_steps == 3
    assert second.discriminator_optimizer.state_dict()["state"]  # its moments came along
    plain = _trainer(seed=4, steps=6, loss=LossSettings())
    plain.continue_from(state)  # a run without --adversarial leaves the discriminator behind
    assert plain.discriminator is None and "discriminator" not in plain.state_dict()
    from sicc.train.__main__ import main

    main(["export", str(tmp_path / "a.pt"), "-o", str(tmp_path / "w.npz")])
    with np.load(tmp_path / "w.npz") as stored:
        names = stored.files
    assert names and not any("discriminator" in k for k in names)
    assert load_weights(tmp_path / "w.npz").config == TINY


def test_the_run_command_records_the_adversarial_settings(tmp_path, monkeypatch):
    from sicc.train import __main__ as cli

    seen = {}

    def fake_run(trainer, checkpoint, log_path, **kw):
        seen.update(weight=trainer.settings.loss.adversarial, lr=trainer.settings.adversarial_lr,
                    warmup=trainer.settings.adversarial_warmup,
                    judge=type(trainer.discriminator).__name__ if trainer.discriminator is not None else False)
        trainer.save_checkpoint(checkpoint)
        return {"stopped": "steps"}

    monkeypatch.setattr(cli, "run", fake_run)
    monkeypatch.setattr(cli, "load_folder", lambda *a, **k: [np.zeros((64, 64, 3), np.uint8)])
    monkeypatch.setattr("sicc.train.perceptual.LPIPSLoss", _L1Perceptual)
    common = ["--init", "scratch", "--config", "tiny", "--batch", "2", "--crop", "64", "--steps", "1"]
    cli.main(["run", *common, "--adversarial", "0.3", "--adversarial-lr", "2e-4", "--adversarial-warmup", "7",
              "--discriminator", "projected", "--out", str(tmp_path / "a")])
    assert seen == {"weight": 0.3, "lr": 2e-4, "warmup": 7, "judge": "ProjectedDiscriminator"}
    cli.main(["run", "--resume", str(tmp_path / "a" / "checkpoint.pt"), "--steps", "2"])
    assert seen == {"weight": 0.3, "lr": 2e-4, "warmup": 7, "judge": "ProjectedDiscriminator"}
    cli.main(["run", *common, "--out", str(tmp_path / "b")])
    assert seen["judge"] is False and seen["weight"] == 0.0
    with pytest.raises(SystemExit, match="adversarial"):
        cli.main(["run", *common, "--adversarial", "-1", "--out", str(tmp_path / "c")])
