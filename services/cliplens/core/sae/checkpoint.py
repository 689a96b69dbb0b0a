"""SAE checkpoints: a directory with ``cfg.json`` (architecture, config, metrics) and ``sae.safetensors``.

``cfg.json`` may hold a ``source`` mapping that says where an imported SAE came from (``format``, the
peer format's name, and ``path``, the original location); a checkpoint without one was trained here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.sae.config import SaeConfig
from cliplens.core.sae.modules import Sae
from cliplens.core.sae.registry import build_sae, make_config

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
FORMAT_VERSION = 1


@dataclass
class SaeCheckpoint:
    sae: Sae
    metrics: dict[str, float] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)


def config_to_dict(cfg: SaeConfig) -> dict[str, Any]:
    fields = dataclasses.asdict(cfg)
    return {"arch": cfg.arch, **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}}


def config_from_dict(raw: dict[str, Any]) -> SaeConfig:
    raw = dict(raw)
    arch = raw.pop("arch", None)
    if not isinstance(arch, str):
        raise InvalidInputError("SAE config has no 'arch'")
    for derived in ("expansion", "metrics", "format_version", "source"):
        raw.pop(derived, None)
    if "prefixes" in raw:
        raw["prefixes"] = tuple(raw["prefixes"])
    return make_config(arch, **raw)


def save_sae(
    sae: Sae,
    directory: str | Path,
    metrics: dict[str, float] | None = None,
    source: dict[str, str] | None = None,
) -> Path:
    """Write ``cfg.json`` + ``sae.safetensors`` into ``directory`` (created if missing); ``source``
    (where an imported SAE came from) is written only when given."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in sae.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    document = {
        **config_to_dict(sae.cfg),
        "expansion": sae.cfg.expansion,
        "metrics": metrics or {},
        "format_version": FORMAT_VERSION,
    }
    if source:
        document["source"] = dict(source)
    (directory / CONFIG_FILE).write_text(json.dumps(document, indent=2, sort_keys=True))
    return directory


def load_sae(directory: str | Path, device: str | torch.device = "cpu") -> SaeCheckpoint:
    """Load a checkpoint written by :func:`save_sae`; the result is in eval mode."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise NotFoundError(f"SAE checkpoint file missing: {path}")
    document = json.loads(config_path.read_text())
    sae = build_sae(config_from_dict(document), seed=0)  # overwritten below; leaves the global RNG alone
    state = load_file(str(weights_path))
    missing, unexpected = sae.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InvalidInputError(
            f"SAE checkpoint {directory} does not match its config: missing {missing}, unexpected {unexpected}"
        )
    return SaeCheckpoint(sae.to(device).eval(), dict(document.get("metrics", {})), source_of(document))


def source_of(document: dict[str, Any]) -> dict[str, str]:
    """The ``source`` of a ``cfg.json`` document: empty for an SAE trained here."""
    source = document.get("source") or {}
    if not isinstance(source, dict):
        raise InvalidInputError(f"SAE config 'source' must be a mapping, got {source!r}")
    return {str(key): str(value) for key, value in source.items()}
