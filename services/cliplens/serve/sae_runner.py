"""SAE deployment: encode, decode and reconstruct activation rows with SAEs held by id."""

from __future__ import annotations

import numpy as np
import torch
from ray import serve
from torch import Tensor

from cliplens.core.models import resolve_device
from cliplens.core.sae import Sae
from cliplens.serve.actor_types import Floats, Reconstructed, SparseRows
from cliplens.serve.backends import takes_deadline
from cliplens.serve.sae_cache import multiplexed_sae_getter
from cliplens.serve.settings import AppSettings


def sparse_rows(z: Tensor, max_active: int = 0) -> SparseRows:
    """The non-zero latents of each row of ``z`` (only the largest ``max_active`` when it is > 0)."""
    z = z.float().cpu()
    if 0 < max_active < z.shape[-1]:
        values, indices = z.topk(max_active, dim=-1)
        z = torch.zeros_like(z).scatter(-1, indices, values)
    indices_out, values_out = [], []
    for row in z.numpy():
        active = np.flatnonzero(row).astype(np.uint32)
        indices_out.append(active)
        values_out.append(row[active].astype(np.float32))
    return SparseRows(int(z.shape[-1]), indices_out, values_out)


@serve.deployment(name="SaeRunner")
class SaeRunner:
    def __init__(self, settings: AppSettings) -> None:
        self.device = resolve_device(settings.device)
        self.get_sae = multiplexed_sae_getter(settings, settings.store(), self.device)

    @takes_deadline
    async def encode(self, sae_id: str, rows: Floats, max_active: int) -> SparseRows:
        sae = await self.get_sae(sae_id)
        return sparse_rows(self._encode(sae, rows), max_active)

    @takes_deadline
    async def decode(self, sae_id: str, dense: Floats) -> Floats:
        sae = await self.get_sae(sae_id)
        with torch.no_grad():
            return sae.decode(torch.from_numpy(dense).to(self.device)).float().cpu().numpy()

    @takes_deadline
    async def reconstruct(self, sae_id: str, rows: Floats, include_latents: bool) -> Reconstructed:
        sae = await self.get_sae(sae_id)
        z = self._encode(sae, rows)
        with torch.no_grad():
            x_hat = sae.decode(z).float().cpu().numpy()
        return Reconstructed(x_hat, sparse_rows(z) if include_latents else None)

    def _encode(self, sae: Sae, rows: Floats) -> Tensor:
        with torch.no_grad():
            return sae.encode(torch.from_numpy(rows).to(self.device))
