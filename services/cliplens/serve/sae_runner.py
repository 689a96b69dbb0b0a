"""SAE deployment: encode, decode and reconstruct activation rows with SAEs held by id."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from ray import serve
from torch import Tensor

from cliplens.core.models import resolve_device
from cliplens.core.sae import Sae
from cliplens.serve.sae_cache import multiplexed_sae_getter
from cliplens.serve.settings import AppSettings
from cliplens.store import open_store

Rows = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SparseRows:
    """Per row: latent indices (strictly increasing) and their activations."""

    d_sae: int
    indices: list[npt.NDArray[np.uint32]]
    values: list[npt.NDArray[np.float32]]


@dataclass(frozen=True)
class Reconstructed:
    reconstruction: Rows
    latents: SparseRows | None


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


@serve.deployment(name="SaeRunner", max_ongoing_requests=16, ray_actor_options={"num_cpus": 1, "num_gpus": 0})
class SaeRunner:
    def __init__(self, settings: AppSettings) -> None:
        self.device = resolve_device(settings.device)
        self.get_sae = multiplexed_sae_getter(settings, open_store(settings.store_uri), self.device)

    async def encode(self, sae_id: str, rows: Rows, max_active: int) -> SparseRows:
        sae = await self.get_sae(sae_id)
        return sparse_rows(self._encode(sae, rows), max_active)

    async def decode(self, sae_id: str, dense: Rows) -> Rows:
        sae = await self.get_sae(sae_id)
        with torch.no_grad():
            return sae.decode(torch.from_numpy(dense).to(self.device)).float().cpu().numpy()

    async def reconstruct(self, sae_id: str, rows: Rows, include_latents: bool) -> Reconstructed:
        sae = await self.get_sae(sae_id)
        z = self._encode(sae, rows)
        with torch.no_grad():
            x_hat = sae.decode(z).float().cpu().numpy()
        return Reconstructed(x_hat, sparse_rows(z) if include_latents else None)

    def _encode(self, sae: Sae, rows: Rows) -> Tensor:
        with torch.no_grad():
            return sae.encode(torch.from_numpy(rows).to(self.device))
