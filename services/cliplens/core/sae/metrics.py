"""Streaming SAE metrics: L0, MSE, normalised MSE, explained variance (R^2), L1 and dead fraction."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float
from torch import Tensor


@dataclass(frozen=True)
class SaeMetrics:
    """Metrics over a set of rows, in the site's own units.

    ``nmse`` is the squared error relative to the inputs' squared norm; ``r2`` is the explained
    variance ``1 - SSE / SST`` (SST around the per-dimension mean); ``dead_fraction`` counts
    latents that never fired on these rows.
    """

    rows: int
    l0: float
    l1: float
    mse: float
    nmse: float
    r2: float
    dead_fraction: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


class MetricAccumulator:
    """Accumulates sums batch by batch so that metrics need no second pass over the data."""

    def __init__(self, d_in: int, d_sae: int) -> None:
        self.rows = 0
        self.l0_sum = 0.0
        self.l1_sum = 0.0
        self.sse = 0.0
        self.energy = 0.0
        self.x_sum = torch.zeros(d_in, dtype=torch.float64)
        self.x_sq_sum = torch.zeros(d_in, dtype=torch.float64)
        self.fired = torch.zeros(d_sae, dtype=torch.bool)

    @torch.no_grad()
    def update(
        self,
        x: Float[Tensor, "batch d_in"],
        x_hat: Float[Tensor, "batch d_in"],
        z: Float[Tensor, "batch d_sae"],
    ) -> None:
        x64, x_hat64 = x.detach().double().cpu(), x_hat.detach().double().cpu()
        active = z.detach() != 0
        self.rows += x.shape[0]
        self.l0_sum += float(active.sum())
        self.l1_sum += float(z.detach().abs().sum())
        self.sse += float((x64 - x_hat64).pow(2).sum())
        self.energy += float(x64.pow(2).sum())
        self.x_sum += x64.sum(0)
        self.x_sq_sum += x64.pow(2).sum(0)
        self.fired |= active.any(0).cpu()

    def result(self) -> SaeMetrics:
        n = max(self.rows, 1)
        sst = float((self.x_sq_sum - self.x_sum.pow(2) / n).sum())
        return SaeMetrics(
            rows=self.rows,
            l0=self.l0_sum / n,
            l1=self.l1_sum / n,
            mse=self.sse / (n * self.x_sum.numel()),
            nmse=self.sse / max(self.energy, 1e-12),
            r2=1.0 - self.sse / max(sst, 1e-12),
            dead_fraction=float((~self.fired).float().mean()),
        )
