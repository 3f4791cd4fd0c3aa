"""Training the level tables (``run --level-film``; sicc.model.level_film): zero-initialised parameters of
the synthesis side, applied in the training forward pass as the runtime applies them, trained with
g_s in --decoder-only mode, added to a run that continues a checkpoint without them (its AdamW
moments and weight average kept), and exported (with --ema, averaged). Tiny model throughout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sicc.codec import Codec
from sicc.model.config import TINY
from sicc.model.level_film import SCALE_KEY, SHIFT_KEY, film_transform
from sicc.model.weights import load_weights
from sicc.train.export import export_weights
from sicc.train.loop import Trainer, TrainSettings, load_checkpoint, run
from sicc.train.objective import LossSettings, SICTrainable
from tests.conftest import synthetic_image
from tests.test_train_fast import _L1Perceptual, _RandomCrops

FILM = ("model.level_film.scale", "model.level_film.shift")


def _trainer(seed=0, net=None, loss=LossSettings(), **kw):
    torch.manual_seed(seed)
    settings = TrainSettings(lr=1e-3, seed=seed, checkpoint_every=10**6, loss=loss, **kw)
    return Trainer(net or SICTrainable(TINY), _RandomCrops(seed), _L1Perceptual(), settings)


def _decodes(codec: Codec, data: bytes) -> list[np.ndarray]:
    return [np.asarray(codec.decode(data, **kw)[0]) for kw in
            (dict(level=1), dict(level=4), dict(), dict(level=2, seed=3, spread=2.0))]


def test_a_level_film_run_whose_tables_are_zero_exports_the_same_pictures(tmp_path):
    """Moment steps (learning rate 0) leave every weight, tables included, where it was: the export
    with zero tables decodes pixel for pixel as the same network exported without them."""
    from sicc.train.__main__ import main

    trainer = _trainer(steps=2, moment_steps=2, level_film=True)
    assert trainer.net.model.level_film is not None
    run(trainer, tmp_path / "c.pt", tmp_path / "c.jsonl", progress=False)
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["settings"]["level_film"] is True
    assert all(not state["net"][k].any() for k in FILM)
    main(["export", str(tmp_path / "c.pt"), "-o", str(tmp_path / "film.npz")])
    weights = load_weights(tmp_path / "film.npz")
    assert not weights.model_state[SCALE_KEY].any() and weights.model_state[SCALE_KEY].shape == (16, TINY.latent)

    plain = SICTrainable(TINY)
    plain.load_state_dict({k: v for k, v in state["net"].items() if k not in FILM})
    export_weights(plain, tmp_path / "plain.npz", {})
    film, without = Codec.load(tmp_path / "film.npz"), Codec.load(tmp_path / "plain.npz")
    assert film.level_film is not None and without.level_film is None and film.model_id != without.model_id
    image = synthetic_image(72, 100, seed=1)
    a, b = film.encode(image), without.encode(image)
    assert a[:20] == b[:20] and a[32:] == b[32:]  # only the model id (and the header CRC) differ
    for x, y in zip(_decodes(film, a), _decodes(without, b)):
        assert np.array_equal(x, y)


def test_the_training_forward_pass_applies_the_tables_as_the_runtime_does(tmp_path):
    torch.manual_seed(0)
    net = SICTrainable(TINY, level_film=True)
    with torch.no_grad():
        net.model.level_film.scale.normal_(0, 0.3)
        net.model.level_film.shift.normal_(0, 0.3)
    export_weights(net, tmp_path / "w.npz", {})
    codec = Codec.load(tmp_path / "w.npz")
    latent = torch.round(torch.randn(1, TINY.latent, 4, 6) * 3)
    for level in (1, 7, 16):
        with torch.no_grad():
            expected = net.model.synthesize(latent, level).numpy()
            plain = net.model.g_s(latent).numpy()
        got = film_transform(codec.transforms.g_s, codec.level_film, level)(latent.numpy())
        assert np.abs(got - expected).max() < 1e-4, level
        assert np.abs(got - plain).max() > 1e-2, level  # the tables do something at this level


def changed_by_run(trainer, checkpoint) -> set[str]:
    """The state keys whose values ``run`` changes (checkpointing to ``checkpoint``)."""
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    run(trainer, checkpoint, checkpoint.with_suffix(".jsonl"), progress=False)
    after = trainer.net.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_decoder_only_trains_the_tables_with_g_s_and_nothing_else(tmp_path):
    trainer = _trainer(steps=3, level_film=True, loss=LossSettings(decoder_only=True))
    changed = changed_by_run(trainer, tmp_path / "d.pt")
    assert set(FILM) <= changed
    assert all(k.startswith(("model.g_s.", "model.level_film.")) for k in changed)


@pytest.mark.parametrize("how", ["continue", "resume"])
def test_a_checkpoint_without_tables_continues_with_its_moments_and_fresh_tables(tmp_path, how):
    first = _trainer(steps=3, ema=0.9)
    run(first, tmp_path / "a.pt", tmp_path / "a.jsonl", progress=False)
    state = load_checkpoint(tmp_path / "a.pt")
    assert not any(k in state["net"] for k in FILM)

    second = _trainer(seed=5, steps=5, ema=0.9, level_film=True)
    (second.continue_from if how == "continue" else second.load_state_dict)(state)
    net = second.net.state_dict()
    assert all(torch.equal(net[k], state["net"][k]) for k in state["net"])
    assert all(not net[k].any() for k in FILM) and all(not second.ema[k].any() for k in FILM)
    assert all(torch.equal(second.ema[k], state["ema"][k]) for k in state["ema"])
    names = [n for n, _ in second.net.named_parameters()]
    saved_names = [n for n in names if n in state["net"]]
    saved = state["optimizer"]["state"]
    moments = second.optimizer.state_dict()["state"]
    for old_index, name in enumerate(saved_names):
        if old_index in saved:
            new = moments[names.index(name)]
            assert torch.equal(new["exp_avg_sq"], saved[old_index]["exp_avg_sq"]), name
            assert float(new["step"]) == float(saved[old_index]["step"])
    assert all(names.index(k) not in moments for k in FILM)  # fresh: no moments yet
    run(second, tmp_path / "b.pt", tmp_path / "b.jsonl", progress=False)
    state = load_checkpoint(tmp_path / "b.pt")
    assert all(state["net"][k].any() for k in FILM) and state["settings"]["level_film"]
    assert all(names.index(k) in state["optimizer"]["state"] for k in FILM)


def test_the_run_command_adds_tables_to_a_checkpoint_or_weights_file_and_keeps_them(tmp_path, monkeypatch):
    from sicc.train import __main__ as cli

    seen = {}

    def fake_run(trainer, checkpoint, log_path, **kw):
        seen.update(film=trainer.net.model.level_film is not None, setting=trainer.settings.level_film,
                    continued=trainer.optimizer_continued)
        trainer.save_checkpoint(checkpoint)
        return {"stopped": "steps"}

    monkeypatch.setattr(cli, "run", fake_run)
    monkeypatch.setattr(cli, "load_folder", lambda *a, **k: [np.zeros((64, 64, 3), np.uint8)])
    monkeypatch.setattr("sicc.train.perceptual.LPIPSLoss", _L1Perceptual)
    trainer = _trainer(steps=1)
    run(trainer, tmp_path / "k.pt", tmp_path / "k.jsonl", progress=False)
    common = ["--batch", "2", "--crop", "64", "--steps", "1"]
    cli.main(["run", "--init", str(tmp_path / "k.pt"), "--level-film", *common, "--out", str(tmp_path / "t")])
    assert seen == {"film": True, "setting": True, "continued": True}
    assert load_checkpoint(tmp_path / "t" / "checkpoint.pt")["settings"]["level_film"] is True
    cli.main(["run", "--init", str(tmp_path / "t" / "checkpoint.pt"), *common, "--out", str(tmp_path / "u")])
    assert seen == {"film": True, "setting": True, "continued": True}  # a network with tables keeps them
    with pytest.raises(SystemExit, match="level tables"):
        cli.main(["run", "--init", str(tmp_path / "t" / "checkpoint.pt"), "--no-level-film", *common,
                  "--out", str(tmp_path / "v")])
    cli.main(["run", "--resume", str(tmp_path / "t" / "checkpoint.pt"), "--steps", "2"])
    assert seen["film"] and seen["setting"]
    export_weights(SICTrainable(TINY), tmp_path / "w.npz", {})  # a weights file without tables
    cli.main(["run", "--init", str(tmp_path / "w.npz"), "--level-film", *common, "--out", str(tmp_path / "x")])
    assert seen == {"film": True, "setting": True, "continued": False}


def test_export_ema_writes_the_averaged_tables_and_validate_loads_them(tmp_path):
    from sicc.train.__main__ import main
    from sicc.train.validate import load_network

    trainer = _trainer(steps=4, ema=0.5, level_film=True)
    run(trainer, tmp_path / "e.pt", tmp_path / "e.jsonl", progress=False)
    state = load_checkpoint(tmp_path / "e.pt")
    assert not torch.equal(state["ema"][FILM[0]], state["net"][FILM[0]])
    main(["export", str(tmp_path / "e.pt"), "-o", str(tmp_path / "ema.npz"), "--ema"])
    exported = load_weights(tmp_path / "ema.npz").model_state
    assert np.array_equal(exported[SCALE_KEY], state["ema"][FILM[0]].numpy())
    assert np.array_equal(exported[SHIFT_KEY], state["ema"][FILM[1]].numpy())
    for path, ema, tables in ((tmp_path / "e.pt", True, state["ema"]), (tmp_path / "e.pt", False, state["net"]),
                              (tmp_path / "ema.npz", False, state["ema"])):
        net = load_network(path, ema=ema)
        assert torch.equal(net.model.level_film.scale.detach(), tables[FILM[0]]), path
    log = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert len(log) == 4


def test_the_loss_uses_the_row_of_the_level_branchs_level_and_of_level_16_for_the_full_branch():
    from sicc.train.objective import sic_loss

    torch.manual_seed(0)
    net, x = SICTrainable(TINY, level_film=True), torch.rand(1, 3, 64, 64)

    def mse(level, row=None):
        """(full branch MSE, level branch MSE) with the shift of level ``row`` set."""
        with torch.no_grad():
            net.model.level_film.shift.zero_()
            if row is not None:
                net.model.level_film.shift[row - 1] = 2.0
            _, terms = sic_loss(net, _L1Perceptual(), x, level, LossSettings(consistency=0.0),
                                torch.Generator().manual_seed(0), spread=0.0)
        return np.array([terms["full_mse"], terms["level_mse"]])

    base = mse(5)
    same = lambda a: np.allclose(a, base, rtol=1e-6, atol=0)  # noqa: E731 - float noise of the conv paths
    assert same(mse(5, row=6)) and same(mse(5, row=4)) and same(mse(5, row=1))  # other levels' rows: unused
    full, level = mse(5, row=5) - base
    assert full == pytest.approx(0, abs=1e-6 * base[0]) and abs(level) > 1e-4  # the level branch's own row
    full, level = mse(5, row=16) - base
    assert abs(full) > 1e-4 and level == pytest.approx(0, abs=1e-6 * base[1])  # the full branch: all 16 levels


def test_widening_keeps_the_tables_and_the_function():
    from sicc.train.widen import widen

    torch.manual_seed(0)
    net = SICTrainable(TINY, level_film=True)
    with torch.no_grad():
        net.model.level_film.scale.normal_(0, 0.3)
        net.model.level_film.shift.normal_(0, 0.3)
    wide = widen(net, TINY.hidden + 4)
    assert torch.equal(wide.model.level_film.scale, net.model.level_film.scale)
    latent = torch.round(torch.randn(1, TINY.latent, 4, 4) * 3)
    with torch.no_grad():
        assert torch.allclose(wide.model.synthesize(latent, 3), net.model.synthesize(latent, 3), atol=1e-5)


def _moments(trainer) -> dict[str, dict]:
    """AdamW's per-parameter state by parameter name, whatever the grouping."""
    params = {id(p): n for n, p in trainer.net.named_parameters()}
    return {params[id(p)]: s for p, s in trainer.optimizer.state.items()}


def test_level_film_lr_gives_the_tables_their_own_group_and_rate(tmp_path):
    trainer = _trainer(steps=3, level_film=True, level_film_lr=40.0, lr_min=1e-3,
                       loss=LossSettings(decoder_only=True))
    groups = trainer.optimizer.param_groups
    assert len(groups) == 2 and len(groups[1]["params"]) == 2
    assert {id(p) for p in groups[1]["params"]} == {id(trainer.net.model.level_film.scale),
                                                      id(trainer.net.model.level_film.shift)}
    slow = _trainer(steps=3, level_film=True, lr_min=1e-3, loss=LossSettings(decoder_only=True))
    assert len(slow.optimizer.param_groups) == 1
    run(trainer, tmp_path / "f.pt", tmp_path / "f.jsonl", progress=False)
    run(slow, tmp_path / "s.pt", tmp_path / "s.jsonl", progress=False)
    assert groups[0]["lr"] == pytest.approx(1e-3) and groups[1]["lr"] == pytest.approx(4e-2)
    fast_move = trainer.net.model.level_film.shift.detach().abs().max()
    slow_move = slow.net.model.level_film.shift.detach().abs().max()
    assert fast_move > 10 * slow_move  # Adam's step is about the rate: 40 times as far in 3 steps
    assert load_checkpoint(tmp_path / "f.pt")["settings"]["level_film_lr"] == 40.0


@pytest.mark.parametrize("first,second", [(1.0, 40.0), (40.0, 1.0), (40.0, 40.0)])
def test_a_checkpoint_continues_into_either_grouping_with_every_moment(tmp_path, first, second):
    a = _trainer(steps=3, level_film=True, level_film_lr=first, loss=LossSettings(decoder_only=True))
    run(a, tmp_path / "a.pt", tmp_path / "a.jsonl", progress=False)
    before = _moments(a)
    assert set(FILM) <= set(before)
    state = load_checkpoint(tmp_path / "a.pt")
    for how in ("continue_from", "load_state_dict"):
        b = _trainer(seed=5, steps=6, level_film=True, level_film_lr=second, loss=LossSettings(decoder_only=True))
        getattr(b, how)(state)
        after = _moments(b)
        assert set(after) == set(before)
        for name in before:
            assert torch.equal(after[name]["exp_avg"], before[name]["exp_avg"]), name
            assert torch.equal(after[name]["exp_avg_sq"], before[name]["exp_avg_sq"]), name
        assert len(b.optimizer.param_groups) == (1 if second == 1.0 else 2)
    run(b, tmp_path / "b.pt", tmp_path / "b.jsonl", progress=False)  # and it trains on


def test_an_optimizer_state_of_another_network_is_refused():
    a = _trainer(steps=1, level_film=True, level_film_lr=40.0)
    state = a.state_dict()
    groups = state["optimizer"]["param_groups"]
    state["optimizer"]["param_groups"] = [groups[0], {**groups[1], "params": groups[1]["params"][:1]}]
    with pytest.raises(ValueError, match="does not fit"):
        _trainer(steps=1, level_film=True, level_film_lr=40.0).continue_from(state)
    state["optimizer"]["param_groups"] = [groups[0], groups[1], groups[1]]
    with pytest.raises(ValueError, match="does not fit"):
        _trainer(steps=1, level_film=True).continue_from(state)
