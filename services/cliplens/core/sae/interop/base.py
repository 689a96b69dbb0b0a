"""What every peer SAE format provides: a reader into a cliplens SAE and a writer out of one."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.sae.modules import Sae
from cliplens.core.sites import Site

OPTION_FLAGS = {
    "arch": "--arch",
    "k": "--k",
    "threshold": "--threshold",
    "input_mean": "--input-mean",
    "input_scalar": "--input-scalar",
}


@dataclass(frozen=True)
class ImportOptions:
    """What a peer checkpoint may not record, given by the caller (``cliplens saes import`` flags).

    ``arch``, ``k`` and ``threshold``: the architecture, top-k and BatchTopK inference threshold of a
    checkpoint that stores only its weights (overcomplete). ``input_mean`` (a file holding a ``(d_in,)``
    vector) and ``input_scalar``: the normalisation ``(x - input_mean) / input_scalar`` that a peer's
    data loader applied before its SAE (saev), folded into the imported SAE so that it reads raw inputs.
    A format reads only the options named in its ``reads_options``.
    """

    arch: str | None = None
    k: int | None = None
    threshold: float | None = None
    input_mean: str | None = None
    input_scalar: float | None = None

    def given(self) -> list[str]:
        """The names of the options that are set."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


@dataclass
class PeerSae:
    """A peer SAE read into cliplens: the SAE, where it came from (``source``: ``format``, ``path``
    and what the peer's config said) and notes on anything the reader had to assume."""

    sae: Sae
    source: dict[str, str]
    notes: list[str] = field(default_factory=list)


class PeerFormat(Protocol):
    name: str
    reads_options: tuple[str, ...]  # the ImportOptions fields that read() uses
    writes: bool  # whether write() is implemented

    def read(
        self,
        path: str | Path,
        *,
        model_id: str,
        site: str | None = None,
        options: ImportOptions | None = None,
    ) -> PeerSae:
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


def check_options(fmt: PeerFormat, options: ImportOptions | None) -> ImportOptions:
    """``options`` (default: none), after checking that ``fmt`` reads every one that is set."""
    options = options or ImportOptions()
    unused = [name for name in options.given() if name not in fmt.reads_options]
    if unused:
        flags = ", ".join(OPTION_FLAGS[name] for name in unused)
        reads = ", ".join(OPTION_FLAGS[name] for name in fmt.reads_options) or "none"
        raise InvalidInputError(f"{flags}: not read by the {fmt.name} format (it reads: {reads})")
    return options


def require_site(site: str | None, where: str, why: str) -> str:
    """The canonical cliplens ``site``; raises saying ``why`` the peer's files cannot tell it."""
    if site is None:
        raise InvalidInputError(
            f"{where}: cannot tell the cliplens site: {why}; pass --site ('final', 'resid:L' for the "
            "CLS token or 'resid:L:patches' for every token)"
        )
    return str(Site.parse(site))


def checkpoint_file(path: str | Path, name: str, where: str) -> Path:
    """The checkpoint file at ``path``: ``path`` itself, or ``path/name`` for a directory."""
    path = Path(path)
    file = path / name if path.is_dir() else path
    if not file.is_file():
        raise NotFoundError(
            f"{where}: no checkpoint file {file} (expected a {name} file or a directory with one)"
        )
    return file
