"""Loading the served CLIP models and SAEs into a replica, timed into the load-time metric."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from cliplens.core.models import LoadedClip, ModelRegistry, load_clip
from cliplens.core.sae import Sae
from cliplens.serve.metrics import metrics
from cliplens.serve.settings import AppSettings
from cliplens.store import ObjectStore, load_sae_from_store

SAE_BYTES_PER_PARAMETER = 4


def registry(settings: AppSettings) -> ModelRegistry:
    base = ModelRegistry.default()
    return (
        base.merged(ModelRegistry.from_file(Path(settings.model_registry)))
        if settings.model_registry
        else base
    )


def load_models(settings: AppSettings) -> dict[str, LoadedClip]:
    """Every served model, on the replica's device (a GPU when Serve gave the replica one)."""
    models_registry = registry(settings)
    loaded = {}
    for model_id in settings.models:
        start = time.perf_counter()
        loaded[model_id] = load_clip(
            model_id, registry=models_registry, device=settings.device, dtype=settings.dtype
        )
        metrics().load_seconds.observe(time.perf_counter() - start, tags={"kind": "clip"})
    return loaded


def load_sae(store: ObjectStore, sae_id: str, device: torch.device) -> Sae:
    start = time.perf_counter()
    sae = load_sae_from_store(store, sae_id, device).sae
    metrics().load_seconds.observe(time.perf_counter() - start, tags={"kind": "sae"})
    return sae


def sae_bytes(d_in: int, d_sae: int) -> int:
    """Resident size of an SAE's weights (encoder, decoder, biases) in float32."""
    return SAE_BYTES_PER_PARAMETER * (2 * d_in * d_sae + d_sae + d_in)
