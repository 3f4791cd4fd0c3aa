"""Where a training step's time goes: ``python -m sicc.train profile``.

Times whole steps (forward, backward, optimizer) of the real objective on
random crops, and splits the forward pass into its labelled parts (g_a, the
hyperprior and entropy parameters, g_s, LPIPS, detail sampling, the
consistency re-encode) with torch's profiler. Each precision / memory-format
variant runs on the same batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .objective import LossSettings, SICTrainable, level_for_step, sic_loss

PARTS = ("g_a", "hyperprior + entropy parameters", "g_s", "LPIPS", "detail sampling", "consistency re-encode (g_a)")


@dataclass(frozen=True)
class Variant:
    precision: str  # "fp32" or "bf16"
    channels_last: bool

    @property
    def name(self) -> str:
        return self.precision + (" + channels_last" if self.channels_last else "")


def profile_variant(net: SICTrainable, perceptual: torch.nn.Module, batches: list[torch.Tensor], variant: Variant,
                    device: str = "cpu", warmup: int = 2) -> dict:
    """Milliseconds per step: total, forward, backward + optimizer, and each forward part."""
    fmt = torch.channels_last if variant.channels_last else torch.contiguous_format
    net = net.to(device).train()
    net.model.to(memory_format=fmt)
    perceptual = perceptual.to(device).to(memory_format=fmt)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-6)
    generator = torch.Generator(device=device).manual_seed(0)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16,
                              enabled=variant.precision == "bf16")

    def step(i: int, x: torch.Tensor) -> float:
        t0 = time.perf_counter()
        with autocast:
            loss, _ = sic_loss(net, perceptual, x, level_for_step(i, net.config.levels), LossSettings(), generator)
        forward = time.perf_counter() - t0
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return forward

    inputs = [b.to(device).contiguous(memory_format=fmt) for b in batches]
    for i in range(warmup):
        step(i, inputs[i % len(inputs)])
    forward = total = 0.0
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for i, x in enumerate(inputs):
            t0 = time.perf_counter()
            forward += step(i, x)
            total += time.perf_counter() - t0
    n = len(inputs)
    parts = {e.key: e.cpu_time_total / 1e3 / n for e in prof.key_averages() if e.key in PARTS}
    # Level cycling: every 16 steps see each level once; the profile runs consecutive levels.
    return {
        "variant": variant.name,
        "steps": n,
        "total_ms": 1e3 * total / n,
        "forward_ms": 1e3 * forward / n,
        "backward_optimizer_ms": 1e3 * (total - forward) / n,
        "parts_ms": {p: parts.get(p, 0.0) for p in PARTS},
    }


def format_table(rows: list[dict], batch: int, crop: int) -> str:
    """A markdown table: one column per variant (profiler timings include its own overhead)."""
    head = "| per step, ms (batch {} of {}²) | {} |".format(batch, crop, " | ".join(r["variant"] for r in rows))
    lines = [head, "|---" * (len(rows) + 1) + "|"]
    lines.append("| **whole step** | " + " | ".join(f"**{r['total_ms']:.0f}**" for r in rows) + " |")
    lines.append("| forward | " + " | ".join(f"{r['forward_ms']:.0f}" for r in rows) + " |")
    for p in PARTS:
        lines.append(f"| &nbsp;&nbsp;{p} | " + " | ".join(f"{r['parts_ms'][p]:.0f}" for r in rows) + " |")
    lines.append("| backward + optimizer | " + " | ".join(f"{r['backward_optimizer_ms']:.0f}" for r in rows) + " |")
    mpx = [batch * crop * crop / 1e6 / (r["total_ms"] / 1e3) for r in rows]
    lines.append("| megapixels / s | " + " | ".join(f"{m:.2f}" for m in mpx) + " |")
    return "\n".join(lines)
