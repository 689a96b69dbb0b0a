"""What every peer SAE format provides: a reader into a cliplens SAE and a writer out of one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from cliplens.core.errors import InvalidInputError
from cliplens.core.sae.modules import Sae


@dataclass
class PeerSae:
    """A peer SAE read into cliplens: the SAE, where it came from (``source``: ``format``, ``path``
    and what the peer's config said) and notes on anything the reader had to assume."""

    sae: Sae
    source: dict[str, str]
    notes: list[str] = field(default_factory=list)


class PeerFormat(Protocol):
    name: str

    def read(self, path: str | Path, *, model_id: str, site: str | None = None) -> PeerSae:
        """Read the SAE at ``path``; ``site`` (a cliplens site) wins over what the peer's config says."""
        ...

    def write(self, sae: Sae, path: str | Path) -> Path:
        """Write ``sae`` at ``path`` so that the peer's loader gives the same ``encode``/``decode``."""
        ...


def load_state(sae: Sae, tensors: dict[str, Tensor]) -> Sae:
    """Copy ``tensors`` (cast to the SAE's dtype) into ``sae``; any state not given keeps its value."""
    state = sae.state_dict()
    unknown = sorted(set(tensors) - set(state))
    if unknown:
        raise InvalidInputError(f"{type(sae).__name__} has no state named {', '.join(unknown)}")
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(state[name].shape):
            raise InvalidInputError(
                f"{name} must have shape {tuple(state[name].shape)}, got {tuple(value.shape)}"
            )
        state[name] = value.to(state[name].dtype)
    sae.load_state_dict(state, strict=True)
    return sae.eval()


def expect_shape(tensors: dict[str, Tensor], name: str, shape: tuple[int, ...], where: str) -> Tensor:
    """``tensors[name]`` in float64, after checking that it exists and has ``shape``."""
    if name not in tensors:
        raise InvalidInputError(f"{where}: no tensor '{name}' (it has {', '.join(sorted(tensors))})")
    tensor = tensors[name]
    if tuple(tensor.shape) != shape:
        raise InvalidInputError(f"{where}: '{name}' must have shape {shape}, got {tuple(tensor.shape)}")
    return tensor.to(torch.float64)
