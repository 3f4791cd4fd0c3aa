"""Training loop: checkpoints that resume exactly, a plain-text log, a progress bar."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..model.config import ModelConfig
from .objective import LossSettings, SICTrainable, level_for_step, sic_loss


@dataclass
class TrainSettings:
    steps: int = 1000
    batch: int = 8
    crop: int = 128
    lr: float = 1e-4
    clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    warmup_steps: int = 0  # steps that train only the full (all-levels) branch
    checkpoint_every: int = 100
    loss: LossSettings = field(default_factory=LossSettings)


class Trainer:
    """Owns the network, optimizer, data sampler and RNG: everything a checkpoint must hold."""

    def __init__(self, net: SICTrainable, sampler, perceptual, settings: TrainSettings):
        self.settings = settings
        self.device = torch.device(settings.device)
        self.net = net.to(self.device).train()
        self.sampler = sampler
        self.perceptual = perceptual.to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=settings.lr)
        self.generator = torch.Generator(device=self.device).manual_seed(settings.seed)
        self.step = 0

    # -- one step ------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        cfg = self.net.config
        x = self.sampler.next_batch().to(self.device)
        level = level_for_step(self.step, cfg.levels)
        loss_settings = self.settings.loss
        if self.step < self.settings.warmup_steps:
            level = cfg.levels  # warm-up: deterministic full decode only
            loss_settings = LossSettings(**{**asdict(loss_settings), "consistency": 0.0})
        loss, terms = sic_loss(self.net, self.perceptual, x, level, loss_settings, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.settings.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.settings.clip)
        self.optimizer.step()
        self.step += 1
        terms["step"] = self.step
        return terms

    # -- checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": self.net.config.to_dict(),
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "sampler": self.sampler.state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.sampler.set_state(state["sampler"])

    def save_checkpoint(self, path: Path) -> None:
        """Write atomically: a run killed mid-save keeps its previous checkpoint."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)


def load_checkpoint_config(path: Path) -> ModelConfig:
    state = torch.load(path, map_location="cpu", weights_only=False)
    return ModelConfig.from_dict(state["config"])


def run(trainer: Trainer, checkpoint: Path, log_path: Path, progress: bool = True) -> dict[str, float]:
    """Train until ``settings.steps``; checkpoint every N steps and at the end."""
    from tqdm import tqdm

    settings = trainer.settings
    log_path.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=settings.steps, initial=trainer.step, disable=not progress, dynamic_ncols=True)
    started = time.time()
    terms: dict[str, float] = {}
    with open(log_path, "a") as log:
        while trainer.step < settings.steps:
            t0 = time.time()
            terms = trainer.train_step()
            terms["seconds"] = round(time.time() - t0, 3)
            terms["wall"] = round(time.time() - started, 1)
            if not math.isfinite(terms["loss"]):
                raise FloatingPointError(f"loss is {terms['loss']} at step {trainer.step}")
            log.write(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in terms.items()}) + "\n")
            log.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{terms['loss']:.3f}", bpp=f"{terms['full_bpp']:.3f}", psnr=f"{terms['full_psnr']:.2f}")
            if trainer.step % settings.checkpoint_every == 0:
                trainer.save_checkpoint(checkpoint)
    trainer.save_checkpoint(checkpoint)
    bar.close()
    return terms
