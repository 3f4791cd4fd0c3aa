"""Training loop: a learning-rate schedule, a wall-clock budget, checkpoints that resume
exactly, a plain-text log, a progress bar.

A run stops at ``steps`` or when its ``minutes`` are spent, whichever comes
first, and checkpoints every ``checkpoint_minutes`` (and every
``checkpoint_every`` steps), at the end, and on SIGTERM/SIGINT. Several short
commands (a GPU lease's 10-minute calls) therefore chain into one run:
``--resume`` continues with the same optimizer state, schedule, random streams
and data order.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..model.config import ModelConfig
from .adversarial import DISCRIMINATORS, discriminator_loss, probability, trainable
from .network import is_level_film_key
from .objective import LossSettings, SICTrainable, sic_loss, step_plan

PRECISIONS = ("fp32", "bf16")
PROVISIONAL_HORIZON = 10**9  # the schedule's length while the speed is being measured
CALIBRATION_SKIP = 5  # first steps not timed (allocation, autotuning)
CALIBRATION_STEPS = 20  # steps timed to set the horizon
HORIZON_MARGIN = 0.97  # the share of the remaining budget a measured horizon plans to use
REAIM_EVERY = 100  # steps between re-measurements of a measured horizon ...
REAIM_UNTIL = 0.8  # ... while the schedule is less than this far along
REAIM_WINDOW_S = 300.0  # ... from the median time of the steps of the last 5 minutes (at least REAIM_EVERY
# steps): on a GPU 100 steps are 8 s, and their median moved by 10 % from one window to the next


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX (oneDNN's check). Elsewhere bf16 autocast is emulated, many times slower
    than fp32 (measured: 33 s against 2.9 s a step on an AVX2-only CPU)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def hardware_name(device: str) -> str:
    """What a run trains on, as a weights file's history records it: the GPU's name (e.g. 'NVIDIA H200')
    or 'CPU'."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev)
    return dev.type.upper()


def resolve_precision(requested: str, device: str) -> tuple[str, str | None]:
    """The precision to train in and a warning, if any: ``auto`` is bf16 where ``device`` has it
    natively and fp32 elsewhere; an explicit ``bf16`` is kept, with a warning where it is emulated."""
    if requested == "auto":
        return ("bf16" if native_bf16(device) else "fp32"), None
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be auto or one of {PRECISIONS}")
    if requested == "bf16" and not native_bf16(device):
        return "bf16", (f"warning: {device} has no native bf16 (AVX512-BF16 or AMX on a CPU); bf16 autocast "
                        "is emulated and much slower than fp32 here; --precision auto picks fp32")
    return requested, None


@dataclass
class TrainSettings:
    steps: int = 1000  # the schedule's horizon and the last step
    batch: int = 8
    crop: int = 256
    lr: float = 1e-4  # peak learning rate
    lr_min: float = 1e-5  # the end of the cosine decay
    lr_warmup: int = 0  # steps of linear warm-up from 0 to ``lr``
    schedule: str = "cosine"  # "cosine" (warm-up, then cosine to lr_min at ``steps``) or "constant"
    weight_decay: float = 0.0  # AdamW's decoupled weight decay (0: plain Adam)
    clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"  # "bf16": autocast for the transforms and LPIPS
    channels_last: bool = False
    warmup_steps: int = 0  # steps that train only the full (all-levels) branch
    # Steps at learning rate 0 that fill a fresh AdamW's moment estimates before the schedule begins,
    # so a run that has no optimizer state to continue (the weights file alone) takes no oversized
    # first steps; 0 where the optimizer state is continued.
    moment_steps: int = 0
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: none); export --ema uses it
    level_film: bool = False  # the network has level tables (sicc.model.level_film): g_s told the level
    level_film_lr: float = 1.0  # factor on the learning rate of the level tables (their own AdamW group)
    inner_film: bool = False  # level tables also on g_s's inner activations (implies level_film)
    adversarial_lr: float = 1e-4  # the discriminator's AdamW rate (with --adversarial)
    adversarial_warmup: int = 100  # discriminator steps before its judgement enters g_s's loss
    discriminator: str = "patch"  # which (sicc.train.adversarial.DISCRIMINATORS)
    checkpoint_every: int = 100
    checkpoint_minutes: float = 5.0
    minutes: float | None = None  # wall-clock budget of this command (None: until ``steps``)
    anchor: tuple[int, float] | None = None  # (step, cosine progress) the decay continues from (None: warm-up end, 0)
    loss: LossSettings = field(default_factory=LossSettings)


RESUMED_SETTINGS = ("batch", "crop", "lr", "lr_min", "lr_warmup", "schedule", "weight_decay", "clip", "seed",
                    "channels_last", "warmup_steps", "moment_steps", "ema", "samples", "texture", "full_weight",
                    "deterministic_share", "deterministic_from", "low_levels", "low_mse", "high_mse", "decoder_only",
                    "level_film", "level_film_lr", "inner_film", "adversarial", "adversarial_lr",
                    "adversarial_warmup", "discriminator", "dists", "dists_levels")
"""The settings a checkpoint carries, so that ``--resume`` continues the same schedule, batches and
objective without repeating them (device, precision, threads and budgets belong to the machine)."""


_LOSS_SETTINGS = ("samples", "texture", "full_weight", "deterministic_share", "deterministic_from", "low_levels",
                  "low_mse", "high_mse", "decoder_only", "adversarial", "dists", "dists_levels")  # the RESUMED_SETTINGS that live in TrainSettings.loss


def resumed_settings(s: TrainSettings) -> dict:
    """The :data:`RESUMED_SETTINGS` of ``s`` as plain values (a checkpoint holds no objects)."""
    values = {name: getattr(s, name) for name in RESUMED_SETTINGS if name not in _LOSS_SETTINGS}
    values.update({name: getattr(s.loss, name) for name in _LOSS_SETTINGS})
    return values


def warmup_end(s: TrainSettings) -> int:
    """The first step of the decay: after the moment-filling steps and the learning-rate warm-up."""
    return s.moment_steps + s.lr_warmup


def schedule_progress(step: int, s: TrainSettings) -> float:
    """How far (0 to 1) the cosine decay is at ``step``: linear from ``s.anchor`` (by default the end of
    the warm-up, at 0) to 1 at ``s.steps``. Moving the horizon moves the anchor to the current step and
    progress, so the learning rate stays continuous and still reaches ``lr_min`` at the new horizon."""
    k0, t0 = s.anchor if s.anchor is not None else (warmup_end(s), 0.0)
    t = t0 + (1.0 - t0) * (step - k0) / max(s.steps - k0, 1)
    return min(max(t, 0.0), 1.0)


def learning_rate(step: int, s: TrainSettings) -> float:
    """The learning rate of (0-based) ``step``: 0 while the moments fill, linear warm-up, then cosine
    decay to ``lr_min``."""
    if step < s.moment_steps:
        return 0.0
    if s.lr_warmup and step < warmup_end(s):
        return s.lr * (step - s.moment_steps + 1) / s.lr_warmup
    if s.schedule == "constant":
        return s.lr
    t = schedule_progress(step, s)
    return s.lr_min + 0.5 * (s.lr - s.lr_min) * (1 + math.cos(math.pi * t))


def retarget(s: TrainSettings, step: int, horizon: int) -> None:
    """Move the schedule's horizon to ``horizon`` before (0-based) ``step`` runs, keeping the learning
    rate continuous: the steps already taken followed the old horizon, the rest follow the new one."""
    if step > warmup_end(s):  # the decay has begun: continue it from where it is
        s.anchor = (step, schedule_progress(step, s))
    s.steps = horizon


def resume_schedule(s: TrainSettings, state: dict, horizon: int | None = None) -> None:
    """Give ``s`` a checkpoint's horizon and anchor, so that ``--resume`` continues its decay exactly; a
    different ``horizon`` (0: measure it again) continues the decay from where the checkpoint left it."""
    saved = int(state.get("horizon") or TrainSettings.steps)
    s.steps = saved
    anchor = state.get("anchor")
    s.anchor = (int(anchor[0]), float(anchor[1])) if anchor is not None else None
    if horizon is not None and horizon != saved:
        retarget(s, int(state["step"]), horizon)


DECODER_PARAMETERS = ("model.g_s.", "model.level_film.")
"""What a decoder-only run trains: g_s and the level tables (when the network has them)."""


def _param_groups(net: SICTrainable, settings: TrainSettings) -> tuple[list[list[str]], list[float]]:
    """The names of the parameters of each AdamW group and each group's factor on the learning rate:
    one group, or with ``level_film_lr`` other than 1 and level tables present, the tables in a
    second group of their own (new tables start at zero and move about lr x factor per step)."""
    names = [name for name, _ in net.named_parameters()]
    split = _split_tables(names)
    if settings.level_film_lr == 1.0 or not split[1]:
        return [names], [1.0]
    return split, [1.0, settings.level_film_lr]


def _split_tables(names: list[str]) -> list[list[str]]:
    """``names`` as [the others, the level tables], each in order: the two AdamW groups of --level-film-lr."""
    return [[n for n in names if not is_level_film_key(n)], [n for n in names if is_level_film_key(n)]]


class Trainer:
    """Owns the network, optimizer, data sampler and RNG: everything a checkpoint must hold."""

    def __init__(self, net: SICTrainable, sampler, perceptual, settings: TrainSettings):
        if settings.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}")
        self.settings = settings
        self.device = torch.device(settings.device)
        self.memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
        self.net = net.to(self.device).train()
        self.net.model.to(memory_format=self.memory_format)
        self.sampler = sampler
        self.perceptual = perceptual.to(self.device).to(memory_format=self.memory_format)
        if settings.level_film and self.net.model.level_film is None:
            self.net.model.add_level_film()  # zero tables: the same function, now told the level
        if settings.inner_film:
            self.net.model.add_level_film(inner=True)  # zero inner tables where there are none yet
        if settings.loss.decoder_only:  # g_s alone learns; the optimizer keeps every parameter, so its
            for name, p in self.net.named_parameters():  # state carries over between the two modes
                p.requires_grad_(name.startswith(DECODER_PARAMETERS))
        self.group_names, self.lr_factors = _param_groups(self.net, settings)
        params = dict(self.net.named_parameters())
        self.optimizer = torch.optim.AdamW([{"params": [params[n] for n in names]} for names in self.group_names],
                                           lr=settings.lr, weight_decay=settings.weight_decay)
        self.ema: dict[str, torch.Tensor] | None = None
        if settings.ema:
            self.ema = {k: v.detach().clone().float() for k, v in self.net.state_dict().items()
                        if v.is_floating_point()}
        self.discriminator: nn.Module | None = None
        self.discriminator_optimizer: torch.optim.Optimizer | None = None
        self.discriminator_steps = 0
        self.dists: nn.Module | None = None
        if settings.loss.dists:  # DISTS itself in the loss: the benchmark's judge in plain torch, frozen
            from .perceptual import DISTSVGG

            self.dists = DISTSVGG().to(self.device).to(memory_format=torch.channels_last)
        if settings.loss.adversarial:
            if settings.discriminator not in DISCRIMINATORS:
                raise ValueError(f"discriminator must be one of {sorted(DISCRIMINATORS)}")
            judge = DISCRIMINATORS[settings.discriminator]()
            self.discriminator = judge.to(self.device).to(memory_format=self.memory_format)
            self.discriminator_optimizer = torch.optim.AdamW(
                trainable(self.discriminator), lr=settings.adversarial_lr, betas=(0.5, 0.9), weight_decay=0.0)
        self.optimizer_continued = False  # whether load_state_dict brought AdamW's moments
        self.generator = torch.Generator(device=self.device).manual_seed(settings.seed)
        self.step = 0
        self.hardware = [hardware_name(settings.device)]  # every machine of this run, resumes included

    def _autocast(self):
        if self.settings.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- one step ------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        cfg = self.net.config
        x = self.sampler.next_batch(self.device).contiguous(memory_format=self.memory_format)
        loss_settings = self.settings.loss
        level, spread = step_plan(self.step, cfg.levels, loss_settings, self.settings.seed)
        if self.step < self.settings.warmup_steps:
            level = cfg.levels  # warm-up: deterministic full decode only
            loss_settings = LossSettings(**{**asdict(loss_settings), "consistency": 0.0})
        lr = learning_rate(self.step, self.settings)
        for group, factor in zip(self.optimizer.param_groups, self.lr_factors):
            group["lr"] = lr * factor
        judge = self.discriminator
        if judge is not None and self.discriminator_steps < self.settings.adversarial_warmup:
            judge = None  # the discriminator learns first: a fresh one's judgement is noise
        fakes: list | None = [] if self.discriminator is not None else None
        if self.discriminator is not None:
            for p in trainable(self.discriminator):  # g_s's step: gradients flow through it, not into it
                p.requires_grad_(False)
        with self._autocast():
            loss, terms = sic_loss(self.net, self.perceptual, x, level, loss_settings, self.generator, spread,
                                   discriminator=judge, fakes=fakes, dists=self.dists)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trained = [p for p in self.net.parameters() if p.grad is not None]
        clip = self.settings.clip if self.settings.clip > 0 else math.inf
        terms["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(trained, clip))  # the norm before clipping
        self.optimizer.step()
        if self.discriminator is not None:
            terms.update(self._discriminator_step(x, torch.cat(fakes)))
        self.step += 1
        self._update_ema()
        terms["step"] = self.step
        terms["lr"] = lr
        return terms

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        """One AdamW step of the discriminator on this step's crops and g_s's decodes of them."""
        d = self.discriminator
        for p in trainable(d):
            p.requires_grad_(True)
        with self._autocast():
            real_logits, fake_logits = d(real), d(fake)
            loss = discriminator_loss(real_logits, fake_logits)
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.discriminator_optimizer.step()
        self.discriminator_steps += 1
        return {"d_loss": loss.item(), "d_real": probability(real_logits), "d_fake": probability(fake_logits)}

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        decay = min(self.settings.ema, (1 + self.step) / (10 + self.step))  # short memory at first
        for k, v in self.net.state_dict().items():
            if k in self.ema:
                self.ema[k].mul_(decay).add_(v.detach().float(), alpha=1 - decay)

    # -- checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": self.net.config.to_dict(),
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
            "sampler": self.sampler.state(),
            "horizon": self.settings.steps,
            "anchor": list(self.settings.anchor) if self.settings.anchor is not None else None,
            "settings": resumed_settings(self.settings),
            "hardware": list(self.hardware),
            "ema": self.ema,
            **self._discriminator_state(),
        }

    def _discriminator_state(self) -> dict:
        """The discriminator, its optimizer and its step count (an adversarial run's checkpoint only)."""
        if self.discriminator is None:
            return {}
        return {"discriminator": self.discriminator.state_dict(),
                "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
                "discriminator_steps": self.discriminator_steps}

    def _load_discriminator(self, state: dict) -> None:
        """An adversarial run continues the checkpoint's discriminator where it has one (else a fresh one
        warms up first); a run without --adversarial leaves it behind."""
        if self.discriminator is None or not state.get("discriminator"):
            return
        self.discriminator.load_state_dict(state["discriminator"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        for group in self.discriminator_optimizer.param_groups:  # this run's rate
            group["lr"] = self.settings.adversarial_lr
        self.discriminator_steps = int(state.get("discriminator_steps", 0))

    def _load_net(self, weights: dict) -> None:
        """The network's weights from a checkpoint's; level tables it lacks (a checkpoint from before
        --level-film) stay at their zero start."""
        current = self.net.state_dict()
        added = {k: current[k] for k in current if k not in weights and is_level_film_key(k)}
        self.net.load_state_dict({**weights, **added})

    def _load_optimizer(self, saved: dict, weights: dict) -> None:
        """AdamW's state from a checkpoint's, matched to this run's parameters by name. The saved
        network's parameters are this network's that its weights hold (a checkpoint from before
        --level-film lacks the tables, which then start with fresh moments), grouped as
        :func:`_param_groups` groups them: all in one, or the level tables in a second group of their
        own (--level-film-lr). So either layout continues into either."""
        names = [name for name, _ in self.net.named_parameters()]
        if any(n not in weights and not is_level_film_key(n) for n in names):
            raise ValueError("the checkpoint's optimizer state does not fit this network")
        present = [n for n in names if n in weights]
        groups = saved.get("param_groups") or []
        layouts = {1: [present], 2: _split_tables(present)}
        layout = layouts.get(len(groups))
        if layout is None or [len(g["params"]) for g in groups] != [len(g) for g in layout]:
            raise ValueError("the checkpoint's optimizer state does not fit this network")
        by_name = {}
        for group, group_names in zip(groups, layout):
            for index, name in zip(group["params"], group_names):
                if index in saved["state"]:
                    by_name[name] = saved["state"][index]
        hyper = {k: v for k, v in groups[0].items() if k != "params"}
        state, param_groups, index = {}, [], 0
        for group_names in self.group_names:
            ids = list(range(index, index + len(group_names)))
            index += len(group_names)
            state.update({i: by_name[n] for i, n in zip(ids, group_names) if n in by_name})
            param_groups.append({**hyper, "params": ids})
        self.optimizer.load_state_dict({"state": state, "param_groups": param_groups})

    def load_state_dict(self, state: dict, optimizer: bool = True) -> None:
        self._load_net(state["net"])
        self.step = int(state["step"])
        self.hardware = list(dict.fromkeys([*state.get("hardware", []), *self.hardware]))
        self._load_ema(state)
        self._load_discriminator(state)
        if optimizer and state.get("optimizer"):
            self._load_optimizer(state["optimizer"], state["net"])
            self.optimizer_continued = True
            for group in self.optimizer.param_groups:  # this run's settings, not the saved ones
                group["weight_decay"] = self.settings.weight_decay
            self.generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            if state.get("cuda_rng") is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"])
            self.sampler.set_state(state["sampler"])

    def averaged_net(self) -> SICTrainable:
        """A copy of the network holding the weight average (the network itself without one)."""
        if self.ema is None:
            return self.net
        import copy

        net = copy.deepcopy(self.net)
        net.load_state_dict({**net.state_dict(), **self.ema})
        return net.to(memory_format=torch.contiguous_format)

    def validate(self, validator) -> None:
        """Score the weight average (else the network) on the validation split; the validator logs it."""
        validator(self.averaged_net(), self.step, "ema" if self.ema is not None else "weights")

    def _load_ema(self, state: dict) -> None:
        """The checkpoint's weight average where it has one, else one started at the loaded weights."""
        if self.ema is None:
            return
        saved = state.get("ema") or {}
        self.ema = {k: (saved[k] if k in saved else v.detach()).clone().float().to(v.device)
                    for k, v in self.net.state_dict().items() if v.is_floating_point()}

    def continue_from(self, state: dict) -> None:
        """Start a new run from a checkpoint's network, AdamW moments and weight average, but with this
        run's own schedule, seed and data order (``load_state_dict`` resumes the old run instead): the
        optimizer goes on from where the last run left it, with no re-warming."""
        self._load_net(state["net"])
        self.hardware = list(dict.fromkeys([*state.get("hardware", []), *self.hardware]))
        self._load_ema(state)
        self._load_discriminator(state)
        if state.get("optimizer"):
            self._load_optimizer(state["optimizer"], state["net"])
            for group in self.optimizer.param_groups:
                group["weight_decay"] = self.settings.weight_decay
            self.optimizer_continued = True

    def save_checkpoint(self, path: Path) -> None:
        """Write atomically: a run killed mid-save keeps its previous checkpoint."""
        save_checkpoint(self.state_dict(), path)


def save_checkpoint(state: dict, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint, read as data on the CPU: tensors, numbers and strings only (no pickled code).
    ``Trainer.load_state_dict`` moves what it needs to the training device."""
    return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: Path) -> dict | None:
    """The training checkpoint at ``path`` (read as data), or None when ``path`` is not one (a weights
    file, or a ``.pt`` of another kind, which the weights loader then names)."""
    if Path(path).suffix != ".pt":
        return None
    try:
        state = load_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a checkpoint: let the weights loader say what it is
        return None
    return state if isinstance(state, dict) and "net" in state else None


def checkpoint_weights(state: dict, path: Path, ema: bool = False) -> dict:
    """A checkpoint's network weights: its last ones, or with ``ema`` its weight average (run --ema)."""
    if not ema:
        return state["net"]
    if not state.get("ema"):
        raise SystemExit(f"{path}: --ema, but this checkpoint keeps no weight average (run --ema)")
    return {**state["net"], **state["ema"]}


def load_checkpoint_config(path: Path) -> ModelConfig:
    return ModelConfig.from_dict(load_checkpoint(path)["config"])


class _StopSignal:
    """Turns SIGTERM/SIGINT into a flag, so the loop ends at a step boundary with a checkpoint."""

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no signal handling
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _trim_log(log_path: Path, step: int) -> None:
    """Drop the log's records after ``step``: a run killed between checkpoints logged steps that its
    resumption trains again, and the log must name each step once. Rewritten atomically."""
    if not log_path.is_file():
        return
    lines = log_path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.strip() or json.loads(line).get("step", 0) <= step]
    if len(kept) == len(lines):
        return
    tmp = log_path.with_name(log_path.name + ".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, log_path)


def run(trainer: Trainer, checkpoint: Path, log_path: Path, progress: bool = True,
        until: int | None = None, clock=time.monotonic, validator=None, validate_every: int = 0) -> dict[str, float]:
    """Train until ``settings.steps`` (or step ``until``, which leaves the schedule alone) or the
    wall-clock budget; checkpoint on the way and at the end.

    Returns the last step's terms plus ``stopped`` ("steps", "minutes" or "signal").
    ``clock`` (seconds) is for tests. A ``validator`` (:class:`sicc.train.validate.Validator`) scores
    the network (its weight average, if the run keeps one) every ``validate_every`` steps and at the end;
    its time is not counted in the steps' times (nor in the measured horizon).
    """
    from tqdm import tqdm

    settings = trainer.settings
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _trim_log(log_path, trainer.step)
    started = last_save = last_end = clock()
    deadline = started + settings.minutes * 60 if settings.minutes else math.inf
    # steps=0: the horizon comes from the measured speed, set after CALIBRATION_STEPS timed steps and
    # re-measured every REAIM_EVERY steps over most of the run (early steps are often slower).
    calibrating = measuring = settings.steps == 0
    if calibrating:
        if not settings.minutes:
            raise ValueError("steps=0 (a horizon from the measured speed) needs a minutes budget")
        settings.steps = PROVISIONAL_HORIZON
    calibration_start = trainer.step + CALIBRATION_SKIP
    timed: deque[tuple[float, float]] = deque()  # (end, seconds) of the latest steps: the window
    bar = tqdm(total=None if calibrating else settings.steps, initial=trainer.step, disable=not progress,
               dynamic_ncols=True)
    terms: dict = {}
    stopped = "steps"
    with open(log_path, "a") as log, _StopSignal() as stop:
        while trainer.step < min(settings.steps, until or settings.steps):
            if clock() >= deadline:
                stopped = "minutes"
                break
            if stop.received is not None:
                stopped = "signal"
                break
            t0 = clock()
            terms = trainer.train_step()
            t1 = clock()
            terms["seconds"] = round(t1 - t0, 4)
            if measuring and trainer.step > calibration_start:
                timed.append((t1, t1 - last_end))  # the whole step, logging and checkpoints included
                while len(timed) > max(CALIBRATION_STEPS, REAIM_EVERY) and timed[0][0] < t1 - REAIM_WINDOW_S:
                    timed.popleft()
                due = (len(timed) == CALIBRATION_STEPS if calibrating
                       else len(timed) >= REAIM_EVERY and trainer.step % REAIM_EVERY == 0)
                if due:
                    per_step = sorted(seconds for _, seconds in timed)[len(timed) // 2]
                    horizon = trainer.step + max(1, int((deadline - clock()) / per_step * HORIZON_MARGIN))
                    if horizon != settings.steps:
                        retarget(settings, trainer.step, horizon)
                        terms["horizon"] = horizon
                        bar.total = settings.steps
                    calibrating = False
                    measuring = schedule_progress(trainer.step, settings) < REAIM_UNTIL
            last_end = t1
            terms["wall"] = round(clock() - started, 1)
            if not math.isfinite(terms["loss"]):
                raise FloatingPointError(f"loss is {terms['loss']} at step {trainer.step}")
            log.write(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in terms.items()}) + "\n")
            log.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{terms['loss']:.3f}", bpp=f"{terms['full_bpp']:.3f}", psnr=f"{terms['full_psnr']:.2f}")
            now = clock()
            if trainer.step % settings.checkpoint_every == 0 or now - last_save >= settings.checkpoint_minutes * 60:
                trainer.save_checkpoint(checkpoint)
                last_save = now
            due = validator is not None and validate_every and trainer.step % validate_every == 0
            if due and stop.received is None:
                trainer.validate(validator)
                last_end = clock()  # the validation is not the next step's time
    trainer.save_checkpoint(checkpoint)
    if validator is not None and stopped != "signal" and (not validate_every or trainer.step % validate_every):
        trainer.validate(validator)  # not after a signal: a stopped run ends now
    bar.close()
    return {**terms, "stopped": stopped}
