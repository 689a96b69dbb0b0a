"""The SAE catalog in an object store: ``saes/<sae_id>/cfg.json`` + ``saes/<sae_id>/sae.safetensors``.

Each entry is a core SAE checkpoint (:mod:`cliplens.core.sae.checkpoint`); its config's
``dataset_id`` is the id of the activation run it was trained on, whose top-k results live at
``runs/<run_id>/topk/<sae_id>.parquet``.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.sae import Sae, SaeCheckpoint, SaeConfig, config_from_dict, load_sae, save_sae
from cliplens.core.sae.checkpoint import CONFIG_FILE, WEIGHTS_FILE, source_of
from cliplens.store.objects import ObjectStore

SAES_PREFIX = "saes"
_SAE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class SaeRecord:
    """What the catalog knows about one SAE without loading its weights."""

    sae_id: str
    cfg: SaeConfig
    metrics: dict[str, float] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.cfg.dataset_id

    @property
    def provenance(self) -> str:
        """``trained here``, or ``imported from <format> (<original path>)``."""
        if not self.source:
            return "trained here"
        path = self.source.get("path")
        return f"imported from {self.source.get('format', '?')}" + (f" ({path})" if path else "")


def check_sae_id(sae_id: str) -> str:
    if not _SAE_ID.match(sae_id):
        raise InvalidInputError(f"invalid SAE id '{sae_id}': use letters, digits, '.', '_' and '-' (max 128)")
    return sae_id


def sae_key(sae_id: str, filename: str) -> str:
    return f"{SAES_PREFIX}/{check_sae_id(sae_id)}/{filename}"


def save_sae_to_store(
    store: ObjectStore,
    sae_id: str,
    sae: Sae,
    metrics: dict[str, float] | None = None,
    source: dict[str, str] | None = None,
) -> SaeRecord:
    """Upload a checkpoint; the config is written last, so a listed SAE always has its weights.
    ``source`` says where an imported SAE came from (none: trained here)."""
    with tempfile.TemporaryDirectory() as tmp:
        save_sae(sae, tmp, metrics, source)
        store.put_file(sae_key(sae_id, WEIGHTS_FILE), Path(tmp) / WEIGHTS_FILE)
        store.put_file(sae_key(sae_id, CONFIG_FILE), Path(tmp) / CONFIG_FILE)
    return SaeRecord(sae_id, sae.cfg, dict(metrics or {}), dict(source or {}))


def read_sae_record(store: ObjectStore, sae_id: str) -> SaeRecord:
    key = sae_key(sae_id, CONFIG_FILE)
    if not store.exists(key):
        raise NotFoundError(f"unknown SAE id '{sae_id}': no checkpoint under {SAES_PREFIX}/{sae_id}/")
    document = json.loads(store.get_bytes(key))
    return SaeRecord(
        sae_id, config_from_dict(document), dict(document.get("metrics", {})), source_of(document)
    )


def load_sae_from_store(store: ObjectStore, sae_id: str, device: str | torch.device = "cpu") -> SaeCheckpoint:
    read_sae_record(store, sae_id)
    with tempfile.TemporaryDirectory() as tmp:
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            (Path(tmp) / name).write_bytes(store.get_bytes(sae_key(sae_id, name)))
        return load_sae(tmp, device)


def list_saes(store: ObjectStore) -> list[SaeRecord]:
    """Every SAE in the catalog, sorted by id."""
    ids = sorted(
        {key.split("/")[1] for key in store.list(f"{SAES_PREFIX}/") if key.endswith(f"/{CONFIG_FILE}")}
    )
    return [read_sae_record(store, sae_id) for sae_id in ids]
