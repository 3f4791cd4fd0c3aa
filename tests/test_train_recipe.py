"""Issue 48's training recipe: the validation split, runs that continue the optimizer instead of
re-warming it, the weight average, the objective aimed at levels 1-8, decoder-only fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sicc.model.config import TINY
from sicc.train import data, loop
from sicc.train.loop import Trainer, TrainSettings, learning_rate, load_checkpoint, run
from sicc.train.objective import LossSettings, SICTrainable, sic_loss, step_plan
from tests.test_train_fast import _L1Perceptual, _RandomCrops


def _trainer(seed=0, loss=LossSettings(), **kw):
    torch.manual_seed(seed)
    settings = TrainSettings(lr=1e-3, seed=seed, checkpoint_every=10**6, loss=loss, **kw)
    return Trainer(SICTrainable(TINY), _RandomCrops(seed), _L1Perceptual(), settings)


# -- the validation split --------------------------------------------------------------------
def test_the_validation_split_is_a_fixed_rule_on_names_and_training_never_sees_it(tmp_path):
    names = [f"photo_{i:03d}.png" for i in range(120)]
    held = {n for n in names if data.is_validation(n)}
    assert 2 <= len(held) <= 15  # about one in 17
    assert held == {n for n in names if data.is_validation(n)}  # a rule, not a draw
    for i, name in enumerate(names):
        Image.fromarray(np.full((20, 20, 3), i, dtype=np.uint8)).save(tmp_path / name)
    train = data.load_folder(tmp_path, 16)
    validation = data.load_folder(tmp_path, 16, split="validation")
    everything = data.load_folder(tmp_path, 16, split="all")
    assert len(train) + len(validation) == len(everything) == 120 and len(validation) == len(held)
    train_values = {int(im[0, 0, 0]) for im in train}
    assert not train_values & {int(im[0, 0, 0]) for im in validation}
    with pytest.raises(ValueError):
        data.load_folder(tmp_path, 16, split="test")


def test_the_shared_training_folder_holds_out_about_forty_photos():
    from tests.conftest import SHARED

    folder = SHARED / "train"
    if not folder.is_dir():
        pytest.skip(f"no training photos at {folder}")
    held = [p.name for p in folder.iterdir() if data.is_validation(p.name)]
    assert 30 <= len(held) <= 50


# -- the objective ---------------------------------------------------------------------------
def test_the_default_plan_is_the_papers_cycle_with_spread_2():
    plan = [step_plan(k, 16, LossSettings()) for k in range(32)]
    assert [lv for lv, _ in plan] == list(range(16, 0, -1)) * 2
    assert {s for _, s in plan} == {2.0}


def test_the_aimed_plan_draws_low_levels_and_deterministic_decodes_reproducibly():
    settings = LossSettings(low_levels=0.75, deterministic_share=0.5)
    plan = [step_plan(k, 16, settings, seed=3) for k in range(4000)]
    levels = np.array([lv for lv, _ in plan])
    spreads = np.array([s for _, s in plan])
    assert levels.min() == 1 and levels.max() == 16
    assert 0.72 < (levels <= 8).mean() < 0.78
    assert 0.47 < (spreads == 0).mean() < 0.53 and set(spreads) == {0.0, 2.0}
    assert plan == [step_plan(k, 16, settings, seed=3) for k in range(4000)]  # a function of (seed, step)
    assert plan != [step_plan(k, 16, settings, seed=4) for k in range(4000)]


def test_deterministic_from_keeps_every_step_below_it_sampled_and_the_same_draws_above():
    settings = LossSettings(low_levels=0.5, deterministic_share=0.25)
    gated = LossSettings(low_levels=0.5, deterministic_share=0.25, deterministic_from=4)
    plan = [step_plan(k, 16, settings, seed=7) for k in range(4000)]
    plan4 = [step_plan(k, 16, gated, seed=7) for k in range(4000)]
    assert [lv for lv, _ in plan] == [lv for lv, _ in plan4]  # the same levels, step for step
    for (level, spread), (_, spread4) in zip(plan, plan4):
        assert spread4 == (2.0 if level < 4 else spread)
    low = [s for lv, s in plan if lv < 4]
    assert 0.2 < low.count(0.0) / len(low) < 0.3  # without the gate a quarter of them were deterministic
    high = [s for lv, s in plan4 if lv >= 4]
    assert 0.22 < high.count(0.0) / len(high) < 0.28


def test_low_mse_and_full_weight_change_the_loss_where_they_should():
    torch.manual_seed(0)
    net = SICTrainable(TINY)
    x = torch.rand(1, 3, 64, 64)

    def loss(level, **kw):
        gen = torch.Generator().manual_seed(0)
        return sic_loss(net, _L1Perceptual(), x, level, LossSettings(consistency=0.0, **kw), gen, spread=0.0)

    base_low, terms = loss(2)
    assert terms["spread"] == 0.0
    from sicc.train.objective import level_lambdas

    lam_d = level_lambdas(2, TINY.levels)[0]
    more, _ = loss(2, low_mse=3.0)
    assert torch.isclose(more - base_low, torch.tensor(0.5 * 2 * lam_d * terms["level_mse"]), rtol=1e-3)
    high, high_terms = loss(TINY.levels)  # low_mse leaves the upper half alone
    assert torch.isclose(loss(TINY.levels, low_mse=3.0)[0], high)
    # high_mse is its mirror: the upper half's lambda_d, not the lower half's
    lam_d_top = level_lambdas(TINY.levels, TINY.levels)[0]
    higher, _ = loss(TINY.levels, high_mse=2.5)
    assert torch.isclose(higher - high, torch.tensor(0.5 * 1.5 * lam_d_top * high_terms["level_mse"]), rtol=1e-3)
    assert torch.isclose(loss(2, high_mse=2.5)[0], base_low)
    half = TINY.levels // 2  # the boundary: level L/2 is the lower half's, L/2 + 1 the upper's
    assert torch.isclose(loss(half, high_mse=2.5)[0], loss(half)[0])
    assert not torch.isclose(loss(half + 1, high_mse=2.5)[0], loss(half + 1)[0])
    lighter, t = loss(2, full_weight=0.25)
    full = 2048 * t["full_mse"] + 8 * t["full_lpips"] + t["full_bpp"]
    assert torch.isclose(base_low - lighter, torch.tensor(0.25 * full), rtol=1e-3)


def test_decoder_only_training_changes_g_s_alone_and_keeps_the_coded_symbols(tmp_path):
    trainer = _trainer(loss=LossSettings(decoder_only=True, deterministic_share=0.5), steps=4)
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y_before = torch.round(trainer.net.model.g_a(x))
    run(trainer, tmp_path / "c.pt", tmp_path / "c.jsonl", progress=False)
    after = trainer.net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.g_s.") for k in changed)
    assert any(k.startswith("model.g_s.") and k.endswith("weight") for k in changed)
    with torch.no_grad():
        assert torch.equal(torch.round(trainer.net.model.g_a(x)), y_before)
    log = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert all(r["consistency"] == 0.0 and r["grad_norm"] > 0 for r in log)


# -- continuing the optimizer ----------------------------------------------------------------
def test_moment_steps_hold_the_learning_rate_at_zero_then_the_schedule_starts():
    s = TrainSettings(steps=100, lr=1e-3, lr_min=1e-5, lr_warmup=0, moment_steps=10)
    assert all(learning_rate(k, s) == 0.0 for k in range(10))
    assert learning_rate(10, s) == pytest.approx(1e-3)
    assert learning_rate(99, s) == pytest.approx(1e-5, rel=0.05)
    warm = TrainSettings(steps=100, lr=1e-3, lr_warmup=4, moment_steps=10)
    assert [learning_rate(k, warm) for k in (9, 10, 13, 14)] == [0.0, pytest.approx(2.5e-4), pytest.approx(1e-3),
                                                                 pytest.approx(1e-3)]


def test_moment_steps_move_no_weight_but_fill_the_moments(tmp_path):
    trainer = _trainer(steps=3, moment_steps=3)
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    run(trainer, tmp_path / "m.pt", tmp_path / "m.jsonl", progress=False)
    assert all(torch.equal(before[k], v) for k, v in trainer.net.state_dict().items())
    moments = [s["exp_avg_sq"] for s in trainer.optimizer.state.values()]
    assert moments and any(m.abs().sum() > 0 for m in moments)


def test_a_new_run_continues_the_checkpoints_optimizer_and_average_not_its_schedule(tmp_path):
    first = _trainer(steps=4, ema=0.9)
    run(first, tmp_path / "a.pt", tmp_path / "a.jsonl", progress=False)
    state = load_checkpoint(tmp_path / "a.pt")
    assert state["ema"] and set(state["ema"]) <= set(state["net"])

    second = _trainer(seed=5, steps=4, ema=0.9)
    second.continue_from(state)
    assert second.step == 0 and second.optimizer_continued
    for k, v in second.net.state_dict().items():
        assert torch.equal(v, state["net"][k])
    saved = state["optimizer"]["state"]
    for i, s in second.optimizer.state_dict()["state"].items():
        assert torch.equal(s["exp_avg_sq"], saved[i]["exp_avg_sq"]) and float(s["step"]) == float(saved[i]["step"])
    assert all(torch.equal(second.ema[k], state["ema"][k]) for k in state["ema"])
    assert second.sampler.state() != first.sampler.state()  # its own data order


def test_the_weight_average_trails_the_weights():
    trainer = _trainer(steps=5, ema=0.5)
    start = {k: v.clone() for k, v in trainer.ema.items()}
    for _ in range(5):
        trainer.train_step()
    net = trainer.net.state_dict()
    moved = [k for k in start if not torch.equal(start[k], net[k])]
    assert moved
    for k in moved:
        assert not torch.equal(trainer.ema[k], net[k]) and not torch.equal(trainer.ema[k], start[k])
    averaged = trainer.averaged_net().state_dict()
    assert all(torch.equal(averaged[k], trainer.ema[k]) for k in moved)


def test_export_records_the_checkpoint_and_the_next_run_finds_it(tmp_path, monkeypatch, capsys):
    from sicc.model.weights import load_weights
    from sicc.fileio import file_sha256
    from sicc.train.__main__ import find_named_checkpoint, main

    trainer = _trainer(steps=2, ema=0.9)
    ckpt = tmp_path / "runs" / "x" / "checkpoint.pt"
    run(trainer, ckpt, tmp_path / "x.jsonl", progress=False)
    main(["export", str(ckpt), "-o", str(tmp_path / "w.npz"), "--ema"])
    weights = load_weights(tmp_path / "w.npz")
    record = weights.training["checkpoint"]
    assert record == {"sha256": file_sha256(ckpt), "file": "checkpoint.pt", "step": 2, "weights": "ema"}
    ema = load_checkpoint(ckpt)["ema"]
    key = next(k for k in ema if k.startswith("g_s") or k.startswith("model.g_s"))
    assert np.array_equal(weights.model_state[key.removeprefix("model.")], ema[key].numpy())

    monkeypatch.chdir(tmp_path / "runs" / "..")
    assert find_named_checkpoint(tmp_path / "w.npz") == Path("runs/x/checkpoint.pt")
    monkeypatch.chdir(tmp_path / "runs" / "x")  # no runs/ here: only $SICC_CHECKPOINTS
    assert find_named_checkpoint(tmp_path / "w.npz") is None
    monkeypatch.setenv("SICC_CHECKPOINTS", str(tmp_path / "runs"))
    assert find_named_checkpoint(tmp_path / "w.npz") == ckpt
    ckpt.write_bytes(ckpt.read_bytes() + b"x")  # another checkpoint under the same name: not the one
    assert find_named_checkpoint(tmp_path / "w.npz") is None


def test_the_run_command_defaults_scale_the_rate_to_the_batch_and_fill_fresh_moments(tmp_path, monkeypatch):
    """A new run without --lr takes 2e-4 x batch/64; without optimizer state to continue it fills
    AdamW's moments first; from a checkpoint with one, it does not."""
    from sicc.train import __main__ as cli

    seen = {}

    def fake_run(trainer, checkpoint, log_path, **kw):
        seen.update(lr=trainer.settings.lr, moments=trainer.settings.moment_steps,
                    continued=trainer.optimizer_continued)
        return {"stopped": "steps"}

    monkeypatch.setattr(cli, "run", fake_run)
    monkeypatch.setattr(cli, "load_folder", lambda *a, **k: [np.zeros((64, 64, 3), np.uint8)])
    monkeypatch.setattr("sicc.train.perceptual.LPIPSLoss", _L1Perceptual)
    cli.main(["run", "--init", "scratch", "--config", "tiny", "--batch", "4", "--crop", "64", "--steps", "1",
              "--out", str(tmp_path / "s")])
    assert seen == {"lr": pytest.approx(2e-4 * 4 / 64), "moments": 0, "continued": False}

    trainer = _trainer(steps=1)
    run(trainer, tmp_path / "k.pt", tmp_path / "k.jsonl", progress=False)
    cli.main(["run", "--init", str(tmp_path / "k.pt"), "--batch", "2", "--crop", "64", "--steps", "1",
              "--out", str(tmp_path / "t")])
    assert seen == {"lr": pytest.approx(2e-4 * 2 / 64), "moments": 0, "continued": True}
    cli.main(["run", "--init", str(tmp_path / "k.pt"), "--fresh-optimizer", "--batch", "2", "--crop", "64",
              "--steps", "1", "--out", str(tmp_path / "u")])
    assert seen == {"lr": pytest.approx(2e-4 * 2 / 64), "moments": cli.FRESH_MOMENT_STEPS, "continued": False}


# -- the early signal ------------------------------------------------------------------------
def _weights_or_skip():
    from sicc.train.perceptual import BACKBONE_FILE, metric_weights_dir

    folder = metric_weights_dir()
    if not (folder / BACKBONE_FILE).is_file():
        pytest.skip(f"metric weights absent ({folder}; set SICC_METRIC_WEIGHTS)")
    return folder


def test_a_run_scores_the_validation_crops_on_schedule_and_at_the_end(tmp_path):
    from sicc.train.validate import Validator

    _weights_or_skip()
    torch.manual_seed(0)
    validator = Validator(torch.rand(3, 3, 64, 64), log=tmp_path / "validation.jsonl", levels=(1, 2),
                          spreads=(0.0, 2.0), batch=2)
    trainer = _trainer(steps=5, ema=0.9)
    run(trainer, tmp_path / "v.pt", tmp_path / "v.jsonl", progress=False, validator=validator, validate_every=2)
    records = [json.loads(line) for line in (tmp_path / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 5] and {r["of"] for r in records} == {"ema"}
    last = records[-1]
    assert last["photos"] == 3 and set(last) >= {"s0", "s2"}
    assert last["s0"]["l2"]["bpp"] > last["s0"]["l1"]["bpp"] > 0
    assert all(np.isfinite(last[s][lv][m]) for s in ("s0", "s2") for lv in ("l1", "l2") for m in
               ("dists", "lpips", "psnr"))
    first, again = validator.score(trainer.net), validator.score(trainer.net)  # fixed crops and seed: repeatable
    assert all(np.array_equal(first.values[k], again.values[k]) for k in first.values)
    moved = validator.score(trainer.averaged_net())
    assert any(not np.array_equal(first.values[k], moved.values[k]) for k in first.values)


def test_a_sampled_validation_figure_does_not_depend_on_the_other_levels_or_spreads_asked():
    """Session 36 saw level 1's sampled DISTS move by .002 between two calls that asked different
    levels: the noise came from one stream shared by every decode. Now each decode has its own."""
    from sicc.train.validate import Validator

    weights = _weights_or_skip()
    torch.manual_seed(0)
    crops = torch.rand(3, 3, 64, 64)
    net = SICTrainable(TINY).eval()
    wide = Validator(crops, levels=(1, 2, 3), spreads=(0.0, 2.0), batch=2, weights_dir=weights).score(net)
    narrow = Validator(crops, levels=(2,), spreads=(2.0,), batch=2, weights_dir=weights).score(net)
    for metric in ("dists", "lpips", "psnr"):
        assert np.array_equal(wide.values[(2.0, 2, metric)], narrow.values[(2.0, 2, metric)]), metric
    other = Validator(crops, levels=(2,), spreads=(2.0,), batch=2, seed=1, weights_dir=weights).score(net)
    assert not np.array_equal(other.values[(2.0, 2, "psnr")], narrow.values[(2.0, 2, "psnr")])
