"""SAE architecture registry: ``arch`` name -> (config type, module type)."""

from __future__ import annotations

from typing import Any

from cliplens.core.errors import InvalidInputError, UnknownArchitectureError
from cliplens.core.sae.config import (
    BatchTopKConfig,
    JumpReluConfig,
    MatryoshkaConfig,
    ReluConfig,
    SaeConfig,
    TopKConfig,
)
from cliplens.core.sae.modules import BatchTopKSae, JumpReluSae, MatryoshkaSae, ReluSae, Sae, TopKSae

_PAIRS: list[tuple[type[SaeConfig], type[Sae]]] = [
    (ReluConfig, ReluSae),
    (TopKConfig, TopKSae),
    (BatchTopKConfig, BatchTopKSae),
    (JumpReluConfig, JumpReluSae),
    (MatryoshkaConfig, MatryoshkaSae),
]
ARCHITECTURES: dict[str, tuple[type[SaeConfig], type[Sae]]] = {
    cfg.arch: (cfg, module) for cfg, module in _PAIRS
}


def config_class(arch: str) -> type[SaeConfig]:
    try:
        return ARCHITECTURES[arch][0]
    except KeyError:
        raise UnknownArchitectureError(
            f"unknown SAE architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}"
        ) from None


def make_config(arch: str, **fields: Any) -> SaeConfig:
    """Build the config of ``arch`` from keyword fields, naming any field it does not have."""
    cls = config_class(arch)
    try:
        return cls(**fields)
    except TypeError as exc:
        raise InvalidInputError(f"bad fields for SAE architecture '{arch}': {exc}") from None


def build_sae(cfg: SaeConfig) -> Sae:
    """A freshly initialised SAE for ``cfg``."""
    return ARCHITECTURES[cfg.arch][1](cfg)
