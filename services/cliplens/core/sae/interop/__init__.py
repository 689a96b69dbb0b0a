"""Reading and writing SAEs in peer libraries' on-disk formats.

Each format is a module with a :class:`~cliplens.core.sae.interop.base.PeerFormat`; :data:`FORMATS`
maps its name to it. A reader folds the peer's affine maps into a cliplens :class:`~cliplens.core.sae.Sae`
so that ``encode`` and ``decode`` give the peer's own outputs (decoder rows are kept as the peer has
them, never renormalised); a writer does the reverse.
"""

from __future__ import annotations

from cliplens.core.errors import InvalidInputError
from cliplens.core.sae.interop.base import ImportOptions, PeerFormat, PeerSae, check_options
from cliplens.core.sae.interop.overcomplete import OvercompleteFormat
from cliplens.core.sae.interop.saelens import SaeLensFormat
from cliplens.core.sae.interop.saev import SaevFormat
from cliplens.core.sae.interop.sparsify import SparsifyFormat

FORMATS: dict[str, PeerFormat] = {
    fmt.name: fmt for fmt in (SaeLensFormat(), SparsifyFormat(), SaevFormat(), OvercompleteFormat())
}


def peer_format(name: str) -> PeerFormat:
    """The peer format called ``name``; raises naming the supported ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown SAE format '{name}'; supported formats: {', '.join(sorted(FORMATS))}"
        ) from None


__all__ = [
    "FORMATS",
    "ImportOptions",
    "OvercompleteFormat",
    "PeerFormat",
    "PeerSae",
    "SaeLensFormat",
    "SaevFormat",
    "SparsifyFormat",
    "check_options",
    "peer_format",
]
