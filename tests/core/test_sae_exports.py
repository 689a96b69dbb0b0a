"""cliplens SAEs exported to SAELens's layout give SAELens the same numbers: SAELens's own loader
read each export (tests/peer_saes/make_exports.py) and recorded its encode and decode on fixed inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cliplens.core.sae import load_sae

EXPORTS = Path(__file__).resolve().parents[1] / "data" / "peer_saes" / "cliplens-export"
ARCHS = sorted(path.name for path in EXPORTS.iterdir())


def test_every_architecture_was_exported() -> None:
    assert ARCHS == ["batchtopk", "jumprelu", "relu", "topk"]


@pytest.mark.parametrize("arch", ARCHS)
def test_saelens_reads_our_export_with_our_numbers(arch: str) -> None:
    readback = json.loads((EXPORTS / arch / "saelens" / "saelens_readback.json").read_text())
    assert readback["loader"] == "sae_lens.SAE.load_from_disk" and readback["sae_lens_version"]
    saelens = load_file(str(EXPORTS / arch / "saelens" / "saelens_readback.safetensors"))
    sae = load_sae(EXPORTS / arch / "cliplens").sae.eval()
    with torch.no_grad():
        latents = sae.encode(saelens["x"])
        recon = sae.decode(latents)
    assert (latents > 0).sum() > 0  # the inputs make latents fire
    torch.testing.assert_close(latents, saelens["latents"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(recon, saelens["recon"], rtol=1e-5, atol=1e-5)
