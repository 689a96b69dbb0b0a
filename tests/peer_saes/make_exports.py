"""Our side of the export check: cliplens SAEs exported to SAELens's layout, read back by SAELens.

Run with the project's venv after ``make_fixtures.py`` has made the peers' venv::

    .venv/bin/python tests/peer_saes/make_exports.py

For each architecture it writes, under ``tests/data/peer_saes/cliplens-export/<arch>/``, a random
cliplens SAE (``cliplens/``, every parameter random, input scale 1.7) and its SAELens export
(``saelens/``), then has SAELens's own loader read the export in the peers' venv
(``make_fixtures.py --check-export``), which writes ``saelens_readback.safetensors`` (SAELens's
``encode`` and ``decode`` on the fixed inputs) beside it. ``tests/core/test_sae_exports.py`` checks
that cliplens gives those numbers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import torch

from cliplens.core.sae import BatchTopKSae, JumpReluSae, Sae, build_sae, save_sae
from cliplens.core.sae.interop import peer_format
from cliplens.core.sae.registry import make_config

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "data" / "peer_saes" / "cliplens-export"
D_IN, D_SAE, K = 16, 32, 4  # d_in of the fixed inputs of peer_writer.py
ARCHS = {"relu": {}, "topk": {"k": K}, "batchtopk": {"k": K}, "jumprelu": {}}


def random_sae(arch: str) -> Sae:
    cfg = make_config(arch, d_in=D_IN, d_sae=D_SAE, model_id="demo", site="resid:2", **ARCHS[arch])
    sae = build_sae(cfg, seed=11)
    generator = torch.Generator().manual_seed(12)
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        sae.input_scale.fill_(1.7)
        if isinstance(sae, BatchTopKSae):
            sae.threshold.fill_(0.2)
        if isinstance(sae, JumpReluSae):
            sae.log_threshold.copy_(torch.empty(D_SAE).uniform_(0.05, 0.6, generator=generator).log())
    return sae.eval()


def main() -> int:
    for arch in ARCHS:
        root = OUT / arch
        shutil.rmtree(root, ignore_errors=True)
        sae = random_sae(arch)
        save_sae(sae, root / "cliplens")
        peer_format("saelens").write(sae, root / "saelens")
        command = [sys.executable, str(HERE / "make_fixtures.py"), "--no-install", "--check-export"]
        subprocess.run([*command, str(root / "saelens")], check=True)
        for record in (root / "saelens" / "saelens_readback.json", OUT.parent / "fixtures.json"):
            record.write_text(record.read_text().replace(f"{HERE.parents[1]}/", ""))  # repository paths
        print(f"{arch}: exported and read back by SAELens in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
