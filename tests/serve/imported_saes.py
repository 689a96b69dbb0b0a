"""SAEs saved by the peer libraries' own code at the demo model's width (tests/data/peer_saes/serve/),
imported into the serve tests' store before the app starts."""

from __future__ import annotations

import json
from pathlib import Path

from cliplens.core.sae.interop.base import ImportOptions
from cliplens.store import LocalStore
from cliplens.store.sae_import import import_sae

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "peer_saes" / "serve"
PEERS = ("saelens", "sparsify", "saev", "overcomplete")
SITE = "final"  # the demo model's embedding: width 128, as the fixtures


def imported_id(peer: str) -> str:
    return f"imported-{peer}"


def import_peer_saes(store_dir: Path) -> list[str]:
    """Import one SAE of each peer into the store; their ids."""
    store = LocalStore(store_dir)
    for peer in PEERS:
        directory = FIXTURES / peer
        expected = json.loads((directory / "expected.json").read_text())
        options = ImportOptions(arch="topk", k=int(expected["k"])) if peer == "overcomplete" else None
        import_sae(store, imported_id(peer), directory, fmt=peer, model_id="demo", site=SITE, options=options)
    return [imported_id(peer) for peer in PEERS]
