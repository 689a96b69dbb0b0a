"""SAE architecture registry: ``arch`` name -> (config type, module type)."""

from __future__ import annotations

from typing import Any

import torch

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


def build_sae(cfg: SaeConfig, *, seed: int | None = None) -> Sae:
    """A freshly initialised SAE for ``cfg``.

    With ``seed`` the init comes from a private ``torch.Generator`` seeded with it: the same seed
    gives the same weights, whatever the state of torch's global RNG, which is left as it was.
    Without one the init is drawn from the global RNG (seed that with ``torch.manual_seed``).
    """
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return ARCHITECTURES[cfg.arch][1](cfg, generator=generator)
