"""SAEs resident in a replica, by id, through Serve model multiplexing.

Requests carry the SAE id as their multiplexed model id, so Serve routes them to replicas that
already hold the SAE; each replica keeps at most :func:`resident_sae_limit` SAEs and evicts the
least recently used one to load another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import torch
from ray import serve

from cliplens.core.sae import Sae
from cliplens.serve.catalog import resident_sae_limit
from cliplens.serve.loading import load_sae
from cliplens.serve.settings import AppSettings
from cliplens.store import ObjectStore

SaeGetter = Callable[[str], Awaitable[Sae]]


def multiplexed_sae_getter(settings: AppSettings, store: ObjectStore, device: torch.device) -> SaeGetter:
    """An async ``sae_id -> Sae`` that loads on a miss and evicts the least recently used SAE."""

    async def load(sae_id: str) -> Sae:
        return await asyncio.to_thread(load_sae, store, sae_id, device)

    getter: SaeGetter = serve.multiplexed(max_num_models_per_replica=resident_sae_limit(settings, store))(
        load
    )
    return getter
