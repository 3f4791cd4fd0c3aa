"""The factorized prior of the hyper latent ``z`` (Balle et al. 2018, appendix 6.1).

One small monotone density per channel, modelled through its cumulative: a
chain of per-channel 1-D affine maps (softplus-positive matrices) with
``tanh`` gates, ending in a logit. ``P(round(z) = v)`` is the cumulative's
difference over ``[v - 1/2, v + 1/2]``. At export the density becomes the
integer frequency table the runtime codes ``z`` with.

The state-dict keys are those of CompressAI's ``EntropyBottleneck`` (filters
3,3,3,3), so weights trained with it load unchanged; CompressAI itself is not
needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .network import ste_round

LIKELIHOOD_BOUND = 1e-9


class _LowerBound(torch.autograd.Function):
    """max(x, bound), passing the gradient wherever it would raise x."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, bound = ctx.saved_tensors
        return grad * ((x >= bound) | (grad < 0)).to(grad.dtype), None


class _Bound(nn.Module):
    def __init__(self, bound: float):
        super().__init__()
        self.register_buffer("bound", torch.tensor([float(bound)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LowerBound.apply(x, self.bound.to(x.dtype))


class FactorizedPrior(nn.Module):
    """Per-channel learned density of ``z`` with additive-noise training."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        widths = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = torch.log(torch.expm1(torch.tensor(1.0 / scale / widths[i + 1])))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[i + 1], widths[i]), float(init))))
            self.biases.append(nn.Parameter(torch.rand(channels, widths[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))
        # Kept for state-dict compatibility with CompressAI's EntropyBottleneck (unused here).
        self.quantiles = nn.Parameter(torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1))
        self.register_buffer("target", torch.tensor([-init_scale, 0.0, init_scale]))
        self.register_buffer("_offset", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("_quantized_cdf", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("_cdf_length", torch.zeros(0, dtype=torch.int32))
        self.likelihood_lower_bound = _Bound(LIKELIHOOD_BOUND)

    def _logits_cumulative(self, values: torch.Tensor) -> torch.Tensor:
        logits = values
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            logits = torch.matmul(F.softplus(matrix), logits) + bias
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i]) * torch.tanh(logits)
        return logits

    def likelihood(self, values: torch.Tensor) -> torch.Tensor:
        """P(bin around ``values``) for ``values`` of shape (channels, 1, N); unbounded below."""
        lower = self._logits_cumulative(values - 0.5)
        upper = self._logits_cumulative(values + 0.5)
        return torch.sigmoid(upper) - torch.sigmoid(lower)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z with uniform noise in training / z rounded in eval, likelihoods), shapes of ``z``. The
        rounding passes the gradient straight through, so z's rate can be optimised in eval mode too."""
        z = z.float()
        if self.training:
            z_tilde = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        else:
            z_tilde = ste_round(z)
        c = z.shape[1]
        flat = z_tilde.transpose(0, 1).reshape(c, 1, -1)
        lik = self.likelihood_lower_bound(self.likelihood(flat))
        lik = lik.reshape(c, z.shape[0], *z.shape[2:]).transpose(0, 1)
        return z_tilde, lik
