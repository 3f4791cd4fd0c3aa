"""The training stack without CompressAI or lpips: the factorized prior, LPIPS-alex in torch,
the learning-rate schedule, bf16 autocast, and the wall-clock budget with exact resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tests.conftest import TORCH_MISSING  # noqa: E402
pytest.importorskip("torch", reason=TORCH_MISSING)

import torch

from sicc.model.config import TINY
from sicc.train import loop
from sicc.train.loop import (Trainer, TrainSettings, learning_rate, load_checkpoint, resolve_precision, resume_schedule,
                             retarget, run, schedule_progress)
from sicc.train.objective import LossSettings, SICTrainable, sic_loss
from sicc.train.prior import FactorizedPrior
from tests.conftest import SHARED


class _L1Perceptual(torch.nn.Module):
    def forward(self, a, b):
        return (a - b).abs().mean()


class _RandomCrops:
    def __init__(self, seed: int = 0, size: int = 64):
        self.rng, self.size = np.random.default_rng(seed), size

    def next_batch(self, device=None) -> torch.Tensor:
        return torch.from_numpy(self.rng.random((2, 3, self.size, self.size), dtype=np.float32))

    def state(self):
        return self.rng.bit_generator.state

    def set_state(self, state) -> None:
        self.rng.bit_generator.state = state


def test_factorized_prior_is_a_distribution_over_the_integers():
    torch.manual_seed(0)
    prior = FactorizedPrior(4)
    values = torch.arange(-200, 201, dtype=torch.float32).view(1, 1, -1).repeat(4, 1, 1)
    total = prior.likelihood(values).sum(dim=-1)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-4)
    z = torch.randn(2, 4, 3, 5) * 4
    prior.eval()
    z_hat, lik = prior(z)
    assert torch.equal(z_hat, torch.round(z)) and lik.shape == z.shape and float(lik.detach().min()) >= 1e-9
    prior.train()
    z_noisy, _ = prior(z)
    assert float((z_noisy - z).abs().max()) <= 0.5 and not torch.equal(z_noisy, z)


def test_factorized_prior_loads_the_shipped_state_and_matches_compressai():
    """Same state-dict keys as CompressAI's EntropyBottleneck, and the same likelihoods."""
    from sicc.model.weights import load_weights

    state = {k: torch.from_numpy(v.copy()) for k, v in load_weights().z_prior_state.items()}
    FactorizedPrior(64).load_state_dict(state, strict=True)
    compressai = pytest.importorskip("compressai.entropy_models")
    torch.manual_seed(3)
    reference = compressai.EntropyBottleneck(8)
    ours = FactorizedPrior(8)
    ours.load_state_dict(reference.state_dict(), strict=True)
    values = torch.linspace(-30, 30, 121).view(1, 1, -1).repeat(8, 1, 1)
    assert torch.allclose(ours.likelihood(values), reference._likelihood(values)[0], atol=1e-7)


@pytest.mark.skipif(not (SHARED / "weights" / "alexnet_features.pth").is_file(), reason="metric weights absent")
def test_lpips_alex_in_torch_matches_the_lpips_package():
    from sicc.train.perceptual import LPIPSAlex, load_lpips_alex

    pytest.importorskip("lpips")
    torch.manual_seed(0)
    x = torch.rand(2, 3, 80, 96) * 2 - 1
    y = (x + 0.2 * torch.randn_like(x)).clamp(-1, 1)
    ours = LPIPSAlex()(x, y)
    reference = load_lpips_alex()(x, y).flatten()
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-6), (ours, reference)
    assert float(LPIPSAlex()(x, x).abs().max()) < 1e-6


def test_texture_distance_is_dists_comparison_of_feature_statistics():
    """Exact values: equal maps are at 0; a map against twice itself has texture and structure
    terms 2*2/(1+4) = 0.8 each, so 0.2; a spatial shuffle keeps the means (texture term 1) and
    breaks the covariance (structure term near 0), so about 0.5; a constant channel equal on
    both sides counts as identical."""
    from sicc.train.perceptual import texture_distance

    torch.manual_seed(0)
    f = torch.rand(2, 5, 16, 16) + 0.5
    assert torch.allclose(texture_distance(f, f), torch.zeros(2), atol=1e-6)
    assert torch.allclose(texture_distance(f, 2 * f), torch.full((2,), 0.2), atol=1e-5)
    shuffled = f.flatten(2)[:, :, torch.randperm(256)].view_as(f)
    assert torch.allclose(texture_distance(f, shuffled), torch.full((2,), 0.5), atol=0.05)
    zero = torch.zeros(1, 3, 8, 8)
    assert float(texture_distance(zero, zero)) == pytest.approx(0.0, abs=1e-6)
    g = f.clone().requires_grad_(True)
    texture_distance(g, f * 0.7).sum().backward()
    assert torch.isfinite(g.grad).all() and float(g.grad.abs().max()) > 0


@pytest.mark.skipif(not (SHARED / "weights" / "alexnet_features.pth").is_file(), reason="metric weights absent")
def test_lpips_with_texture_is_the_same_lpips_plus_the_texture_distance():
    from sicc.train.perceptual import LPIPSLoss

    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    metric = LPIPSLoss()
    lpips, texture = metric(y, x, texture=True)
    assert float(lpips) == pytest.approx(float(metric(y, x)), rel=1e-6)
    assert 0 < float(texture) < 1
    same_lpips, same_texture = metric(x, x, texture=True)
    assert abs(float(same_lpips)) < 1e-6 and abs(float(same_texture)) < 1e-5


class _L1PerceptualWithTexture(torch.nn.Module):
    def forward(self, a, b, texture=False):
        l1 = (a - b).abs().mean()
        return (l1, (a.mean() - b.mean()).abs() + 0.25) if texture else l1


def test_the_texture_weight_adds_its_term_to_every_lpips_term():
    """loss(w) - loss(0) = w * (0.5 * full_lpips_weight * full_texture + 0.5 * lambda_p(l) * level_texture)."""
    from sicc.train.objective import level_lambdas

    torch.manual_seed(0)
    net, x, level = SICTrainable(TINY), torch.rand(2, 3, 64, 64), 5
    base, base_terms = sic_loss(net, _L1PerceptualWithTexture(), x, level, LossSettings(),
                                torch.Generator().manual_seed(0))
    assert "full_texture" not in base_terms
    with_texture, terms = sic_loss(net, _L1PerceptualWithTexture(), x, level, LossSettings(texture=0.5),
                                   torch.Generator().manual_seed(0))
    assert terms["full_lpips"] == pytest.approx(base_terms["full_lpips"])
    assert terms["full_texture"] > 0.25 and terms["level_texture"] > 0.25
    _, lam_p, _ = level_lambdas(level, TINY.levels)
    expected = 0.5 * (0.5 * LossSettings().full_lpips * terms["full_texture"] + 0.5 * lam_p * terms["level_texture"])
    assert with_texture.item() - base.item() == pytest.approx(expected, rel=1e-4)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    s = TrainSettings(steps=1000, lr=1e-3, lr_min=1e-5, lr_warmup=100)
    assert learning_rate(0, s) == pytest.approx(1e-5) and learning_rate(99, s) == pytest.approx(1e-3)
    assert learning_rate(100, s) == pytest.approx(1e-3)
    assert learning_rate(550, s) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(1000, s) == pytest.approx(1e-5) and learning_rate(5000, s) == pytest.approx(1e-5)
    rates = [learning_rate(i, s) for i in range(100, 1001, 50)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert learning_rate(700, TrainSettings(steps=1000, lr=2e-4, schedule="constant")) == 2e-4


def test_bf16_autocast_keeps_the_rate_terms_in_float32():
    torch.manual_seed(0)
    net = SICTrainable(TINY)
    x = torch.rand(2, 3, 64, 64)
    gen = torch.Generator().manual_seed(0)
    full, _ = sic_loss(net, _L1Perceptual(), x, 5, LossSettings(), gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gen = torch.Generator().manual_seed(0)
        half, terms = sic_loss(net, _L1Perceptual(), x, 5, LossSettings(), gen)
    assert half.dtype == torch.float32 and math.isfinite(half.item())
    assert half.item() == pytest.approx(full.item(), rel=0.05)
    half.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in net.parameters())


def test_auto_precision_is_bf16_only_where_the_device_has_it_natively(monkeypatch):
    monkeypatch.setattr(loop, "native_bf16", lambda device: False)
    assert resolve_precision("auto", "cpu") == ("fp32", None)
    precision, warning = resolve_precision("bf16", "cpu")
    assert precision == "bf16" and "emulated" in warning
    assert resolve_precision("fp32", "cpu") == ("fp32", None)
    monkeypatch.setattr(loop, "native_bf16", lambda device: True)
    assert resolve_precision("auto", "cpu") == ("bf16", None)
    assert resolve_precision("bf16", "cpu") == ("bf16", None)
    with pytest.raises(ValueError):
        resolve_precision("fp16", "cpu")


def test_native_bf16_probe_agrees_with_onednn():
    assert loop.native_bf16("cpu") == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert loop.native_bf16("cuda") == (torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _budget_trainer(seed=0, **kw):
    torch.manual_seed(seed)
    settings = TrainSettings(lr=1e-3, seed=seed, lr_warmup=2, checkpoint_every=10**6, **kw)
    return Trainer(SICTrainable(TINY), _RandomCrops(seed), _L1Perceptual(), settings)


def test_a_budget_stops_the_run_and_resume_continues_it_exactly(tmp_path):
    straight = _budget_trainer(steps=6)
    run(straight, tmp_path / "a.pt", tmp_path / "a.jsonl", progress=False)
    assert straight.step == 6

    first = _budget_trainer(steps=6, minutes=1e-9)  # the budget is spent before the first step
    end = run(first, tmp_path / "b.pt", tmp_path / "b.jsonl", progress=False)
    assert end["stopped"] == "minutes" and first.step == 0 and (tmp_path / "b.pt").is_file()
    first.settings.minutes = None
    run(first, tmp_path / "b.pt", tmp_path / "b.jsonl", progress=False, until=3)
    resumed = _budget_trainer(seed=9, steps=6)  # other init, other data seed: all must come from the checkpoint
    state = load_checkpoint(tmp_path / "b.pt")
    assert state["step"] == 3 and state["horizon"] == 6
    resumed.load_state_dict(state)
    end = run(resumed, tmp_path / "b.pt", tmp_path / "b.jsonl", progress=False)
    assert end["stopped"] == "steps" and resumed.step == 6
    for (name, a), (_, b) in zip(straight.net.state_dict().items(), resumed.net.state_dict().items()):
        assert torch.equal(a, b), name
    log = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6] and "lr" in log[0]


def test_resume_after_a_kill_between_checkpoints_logs_each_step_once(tmp_path):
    first = _budget_trainer(steps=6)
    run(first, tmp_path / "a.pt", tmp_path / "a.jsonl", progress=False, until=3)
    with open(tmp_path / "a.jsonl", "a") as log:  # steps 4 and 5 ran and were logged, then a kill before the checkpoint
        log.write(json.dumps({"step": 4, "loss": 1.0}) + "\n" + json.dumps({"step": 5, "loss": 1.0}) + "\n")
    resumed = _budget_trainer(steps=6)
    resumed.load_state_dict(load_checkpoint(tmp_path / "a.pt"))
    run(resumed, tmp_path / "a.pt", tmp_path / "a.jsonl", progress=False)
    log = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert log[3]["loss"] != 1.0 and not (tmp_path / "a.jsonl.tmp").exists()


def test_a_checkpoint_records_every_machine_of_its_run_and_export_keeps_it(tmp_path):
    from sicc.model.weights import load_weights
    from sicc.train.__main__ import main
    from sicc.train.loop import save_checkpoint

    first = _budget_trainer(steps=2)
    run(first, tmp_path / "a.pt", tmp_path / "a.jsonl", progress=False)
    state = load_checkpoint(tmp_path / "a.pt")
    assert state["hardware"] == ["CPU"]
    state["hardware"] = ["NVIDIA H200"]  # as if the first command had run on a GPU
    resumed = _budget_trainer(steps=4)
    resumed.load_state_dict(state)
    run(resumed, tmp_path / "a.pt", tmp_path / "a.jsonl", progress=False)
    assert load_checkpoint(tmp_path / "a.pt")["hardware"] == ["NVIDIA H200", "CPU"]

    def exported_hardware(checkpoint, *extra):
        main(["export", str(checkpoint), "-o", str(tmp_path / "w.npz"), "--log", str(tmp_path / "a.jsonl"), *extra])
        return load_weights(tmp_path / "w.npz").training["runs"][-1].get("hardware")

    assert exported_hardware(tmp_path / "a.pt") == ["NVIDIA H200", "CPU"]
    old = {k: v for k, v in load_checkpoint(tmp_path / "a.pt").items() if k != "hardware"}  # saved before session 24
    save_checkpoint(old, tmp_path / "old.pt")
    assert exported_hardware(tmp_path / "old.pt") is None
    assert exported_hardware(tmp_path / "old.pt", "--hardware", "NVIDIA H200") == ["NVIDIA H200"]


class _FakeClock:
    """Every reading is ``tick`` seconds after the previous one; ``tick`` may be a function of the
    reading's number (1, 2, ...), for a machine whose speed changes."""

    def __init__(self, tick):
        self.now, self.readings = 0.0, 0
        self.tick = tick if callable(tick) else (lambda _: tick)

    def __call__(self) -> float:
        self.readings += 1
        self.now += self.tick(self.readings)
        return self.now


def test_horizon_from_measured_speed(tmp_path):
    # The loop reads the clock about 4 times a step: a step "takes" about 2 s of a 2-minute budget.
    trainer = _budget_trainer(steps=0, minutes=2)
    end = run(trainer, tmp_path / "c.pt", tmp_path / "c.jsonl", progress=False, clock=_FakeClock(0.5))
    horizon = load_checkpoint(tmp_path / "c.pt")["horizon"]
    assert 40 < horizon < 75, horizon  # set from the speed, not the provisional 10**9
    assert end["stopped"] in ("steps", "minutes") and trainer.step <= horizon


def test_moving_the_horizon_keeps_the_rate_continuous_and_ends_at_the_floor():
    s = TrainSettings(steps=1000, lr=1e-3, lr_min=1e-5, lr_warmup=100)
    before = learning_rate(400, s)
    retarget(s, 400, 1600)  # the run turned out faster: a longer decay from where it stands
    assert learning_rate(400, s) == pytest.approx(before)
    assert s.anchor == (400, pytest.approx(schedule_progress(400, TrainSettings(steps=1000, lr_warmup=100))))
    assert learning_rate(1600, s) == pytest.approx(1e-5) and learning_rate(1599, s) > 1e-5
    rates = [learning_rate(i, s) for i in range(400, 1601, 50)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    retarget(s, 800, 900)  # slower again: a shorter one, still continuous
    assert learning_rate(800, s) == pytest.approx(rates[8]) and learning_rate(900, s) == pytest.approx(1e-5)
    early = TrainSettings(steps=1000, lr_warmup=100)
    retarget(early, 50, 2000)  # during the warm-up the decay has not begun: no anchor needed
    assert early.anchor is None and early.steps == 2000


def test_resume_keeps_a_moved_horizon_and_can_move_it_again():
    trainer = _budget_trainer(steps=100)
    trainer.settings.lr_warmup, trainer.step = 10, 40
    retarget(trainer.settings, 40, 150)
    trainer.step = 60
    state, lr60 = trainer.state_dict(), learning_rate(60, trainer.settings)
    same = TrainSettings(lr=1e-3, lr_warmup=10)
    resume_schedule(same, state)
    assert same.steps == 150 and [learning_rate(i, same) for i in (60, 149, 150)] == pytest.approx(
        [learning_rate(i, trainer.settings) for i in (60, 149, 150)])
    longer = TrainSettings(lr=1e-3, lr_warmup=10, lr_min=1e-5)
    resume_schedule(longer, state, 300)
    assert longer.steps == 300 and learning_rate(60, longer) == pytest.approx(lr60)
    assert learning_rate(300, longer) == pytest.approx(1e-5)
    measured = TrainSettings(lr=1e-3, lr_warmup=10)
    resume_schedule(measured, state, 0)  # measured again by run(), from where the decay stands
    assert measured.steps == 0 and measured.anchor == (60, pytest.approx(schedule_progress(60, trainer.settings)))
    old = {k: v for k, v in state.items() if k != "anchor"}  # a checkpoint from before anchors
    plain = TrainSettings(lr=1e-3, lr_warmup=10)
    resume_schedule(plain, old)
    assert plain.anchor is None and plain.steps == 150


def test_a_measured_horizon_follows_the_speed_and_ends_at_the_floor(tmp_path, monkeypatch):
    """The first steps are slow (as on a real machine): the horizon set from them is moved later when
    the run speeds up, and the decay still reaches the floor at the new horizon, without a jump."""
    from sicc.train import loop

    for name, value in (("CALIBRATION_SKIP", 1), ("CALIBRATION_STEPS", 5), ("REAIM_EVERY", 5), ("REAIM_WINDOW_S", 4)):
        monkeypatch.setattr(loop, name, value)
    trainer = _budget_trainer(steps=0, minutes=0.5)
    trainer.settings.lr_min = 1e-5
    clock = _FakeClock(lambda n: 0.25 if n <= 5 * 10 else 0.1)  # 5 readings a step: 1.25 s for 10 steps, then 0.5 s
    end = run(trainer, tmp_path / "c.pt", tmp_path / "c.jsonl", progress=False, clock=clock)
    log = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    horizons = [row["horizon"] for row in log if "horizon" in row]
    assert len(horizons) >= 2 and horizons[-1] > horizons[0] * 1.2, horizons
    assert end["stopped"] == "steps" and trainer.step == horizons[-1] == load_checkpoint(tmp_path / "c.pt")["horizon"]
    rates = [row["lr"] for row in log]
    assert rates[-1] < 1.5e-5
    decay = rates[trainer.settings.lr_warmup:]
    assert all(b <= a * 1.0001 for a, b in zip(decay, decay[1:]))  # never back up
    assert max(a - b for a, b in zip(decay, decay[1:])) < 0.1 * decay[0]  # and no jump down


def test_the_horizon_is_measured_over_a_window_of_minutes_not_of_the_last_steps(tmp_path, monkeypatch):
    """The speed swings every few steps (as a GPU's did by 10 % from one 100-step window to the next):
    a horizon from the last REAIM_EVERY steps swings with it, one from the last minutes holds still."""
    from sicc.train import loop

    for name, value in (("CALIBRATION_SKIP", 1), ("CALIBRATION_STEPS", 5), ("REAIM_EVERY", 5)):
        monkeypatch.setattr(loop, name, value)

    def horizons(window_s: float, out: Path) -> list[int]:
        monkeypatch.setattr(loop, "REAIM_WINDOW_S", window_s)
        trainer = _budget_trainer(steps=0, minutes=0.25)
        # about 5 readings a step: blocks of 6 steps at 0.4 s a step, then 6 at 0.1 s
        swinging = _FakeClock(lambda n: 0.08 if (n // 30) % 2 == 0 else 0.02)
        run(trainer, out / "c.pt", out / "c.jsonl", progress=False, clock=swinging)
        log = [json.loads(line) for line in (out / "c.jsonl").read_text().splitlines()]
        return [row["horizon"] for row in log if "horizon" in row][1:]  # the re-aims after the first

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    steps, minutes = horizons(0.0, tmp_path / "a"), horizons(30.0, tmp_path / "b")
    assert len(steps) >= 3 and len(minutes) >= 3, (steps, minutes)
    assert max(minutes) - min(minutes) < 0.5 * (max(steps) - min(steps)), (steps, minutes)


def test_resume_takes_the_run_settings_from_the_checkpoint_unless_given(tmp_path, capsys):
    """--resume continues the same schedule, batch and memory format without repeating them; an
    option given replaces the checkpoint's value (and says so); an old checkpoint without settings
    falls back to the defaults."""
    from sicc.train.__main__ import RUN_DEFAULTS, _build_parser, _run_options

    trainer = _budget_trainer(steps=6, channels_last=True)
    trainer.settings.lr_min = 2e-6
    state = trainer.state_dict()
    assert state["settings"]["lr"] == 1e-3 and state["settings"]["lr_warmup"] == 2
    assert state["settings"]["channels_last"] is True and state["settings"]["lr_min"] == 2e-6
    save = tmp_path / "c.pt"
    loop.save_checkpoint(state, save)
    state = load_checkpoint(save)  # what a checkpoint holds must load with weights_only

    parse = _build_parser().parse_args
    opts = _run_options(parse(["run", "--resume", str(save)]), state)
    assert {k: opts[k] for k in ("lr", "lr_min", "lr_warmup", "channels_last", "seed")} == {
        "lr": 1e-3, "lr_min": 2e-6, "lr_warmup": 2, "channels_last": True, "seed": 0}
    assert "resuming with the checkpoint's" in capsys.readouterr().err

    opts = _run_options(parse(["run", "--resume", str(save), "--lr", "5e-4", "--no-channels-last"]), state)
    assert opts["lr"] == 5e-4 and opts["channels_last"] is False and opts["lr_warmup"] == 2
    assert "lr 0.001 -> 0.0005" in capsys.readouterr().err

    old = {k: v for k, v in state.items() if k != "settings"}
    assert _run_options(parse(["run", "--resume", str(save)]), old) == RUN_DEFAULTS
    assert _run_options(parse(["run"]), None) == RUN_DEFAULTS
    assert RUN_DEFAULTS == loop.resumed_settings(TrainSettings())

    # The objective's texture weight travels with the checkpoint too; one from before it existed means 0.
    trainer = _budget_trainer(steps=6, loss=LossSettings(texture=0.25))
    assert trainer.state_dict()["settings"]["texture"] == 0.25
    assert _run_options(parse(["run", "--resume", str(save)]), trainer.state_dict())["texture"] == 0.25
    assert _run_options(parse(["run", "--resume", str(save), "--texture", "0"]), trainer.state_dict())["texture"] == 0
    before = {**state, "settings": {k: v for k, v in state["settings"].items() if k != "texture"}}
    assert _run_options(parse(["run", "--resume", str(save)]), before)["texture"] == 0.0


def test_resume_continues_in_the_checkpoints_own_folder(tmp_path):
    """`run --resume runs/cpu/checkpoint.pt` (as docs/training.md writes it) extends runs/cpu's
    checkpoint and log, rather than starting a run folder of its own elsewhere."""
    from sicc.train.__main__ import _build_parser, _run_folder

    parse = _build_parser().parse_args
    save = tmp_path / "cpu" / "checkpoint.pt"
    assert _run_folder(parse(["run", "--resume", str(save)])) == tmp_path / "cpu"
    assert _run_folder(parse(["run", "--resume", str(save), "--out", str(tmp_path / "b")])) == tmp_path / "b"
    assert _run_folder(parse(["run"])).as_posix() == "runs/main"
