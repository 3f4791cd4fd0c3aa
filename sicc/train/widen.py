"""Widen a trained network's transforms without changing what it computes.

Issue #10's architecture question (is a wider model worth its cost per GPU-minute?) cannot be
answered from scratch on 15-minute bursts: a new network would spend them catching up with
the shipped one. ``widen`` instead gives the shipped network more hidden channels
(``ModelConfig.hidden``: g_a, g_s, h_a and h_s) and keeps its function: every trained weight
is copied, the new channels get a fresh initialisation, and the weights *from* a new channel
*into* an old one are zero (in convolutions and in GDN's normalisation pool). The old channels
therefore see exactly what they saw before, the last layer of each transform ignores the new
channels, and training starts from the shipped model's curve with the new capacity free to
grow (the zero weights receive gradients at once: they multiply non-zero activations).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .layers import GDN
from .objective import SICTrainable


def _axes(module: nn.Module, name: str) -> tuple[int, int] | None:
    """(output axis, input axis) of a parameter that connects channels to channels, else None."""
    if name == "weight" and isinstance(module, nn.ConvTranspose2d):
        return 1, 0
    if name == "weight" and isinstance(module, nn.Conv2d):
        return 0, 1
    if name == "gamma_sqrt" and isinstance(module, GDN):
        return 0, 1  # gamma[i, j]: weight of x_j^2 in channel i's normaliser
    return None


def widen(net: SICTrainable, hidden: int, seed: int = 0) -> SICTrainable:
    """A copy of ``net`` with ``hidden`` transform channels that computes the same function."""
    old_config = net.config
    if hidden < old_config.hidden:
        raise ValueError(f"cannot narrow the network: it has {old_config.hidden} hidden channels, "
                         f"asked for {hidden}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        film = net.model.level_film
        wide = SICTrainable(replace(old_config, hidden=hidden), level_film=film is not None,
                            inner_film=film is not None and film.inner_scale is not None)
    state = wide.state_dict()
    with torch.no_grad():
        for key, old in net.state_dict().items():
            new = state[key]
            block = tuple(slice(0, n) for n in old.shape)
            new[block] = old
            if new.shape == old.shape:
                continue
            owner, _, name = key.rpartition(".")
            axes = _axes(wide.get_submodule(owner), name)
            if axes is None:
                continue  # a bias or GDN's beta: the new entries belong to new channels only
            out_axis, in_axis = axes
            into_old = [slice(None)] * new.dim()
            into_old[out_axis] = slice(0, old.shape[out_axis])
            into_old[in_axis] = slice(old.shape[in_axis], None)
            new[tuple(into_old)] = 0
    wide.load_state_dict(state)
    return wide
