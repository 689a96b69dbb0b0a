"""An SAE saved by each peer library's own code, imported, serves the peer's numbers: Encode and
Decode over gRPC equal the peer's encode and decode on its fixed inputs, and attribution runs on it."""

from __future__ import annotations

import numpy as np
import pytest
from imported_saes import FIXTURES, PEERS, imported_id
from safetensors.numpy import load_file
from serve_setup import ServeApp

from cliplens_client import Client, NotFoundError


@pytest.mark.parametrize("peer", PEERS)
def test_an_sae_saved_by_its_peer_serves_the_peers_numbers(
    client: Client, serve_app: ServeApp, peer: str
) -> None:
    sae_id, peer_io = imported_id(peer), load_file(str(FIXTURES / peer / "io.safetensors"))
    codes = client.encode(sae_id, activations=peer_io["x"])
    np.testing.assert_allclose(codes.to_dense(), peer_io["latents"], rtol=1e-5, atol=1e-6)
    assert (codes.to_dense() > 0).any()
    np.testing.assert_allclose(client.decode(sae_id, codes), peer_io["recon"], rtol=1e-5, atol=1e-5)
    (attribution,) = client.attribute_latents(
        sae_id, serve_app.index.jpegs[0], ["a photo of a cat."], top_n=3
    )
    assert np.isfinite(attribution.score) and len(attribution.latents) <= 3
    with pytest.raises(NotFoundError, match="has no feature index"):  # not ranked on any data set here
        client.top_activations(sae_id, 0)
