"""The committed stubs in cliplens_client/v1 must equal a fresh generation from protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "clients" / "python" / "generate_stubs.py"
STUBS_DIR = ROOT / "clients" / "python" / "cliplens_client" / "v1"


def _stubs(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.glob("*_pb2*.py*"))}


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)], check=True, capture_output=True)
    fresh, committed = _stubs(tmp_path), _stubs(STUBS_DIR)
    assert fresh, "the generator wrote no stubs"
    assert sorted(committed) == sorted(fresh), "stub files differ; run clients/python/generate_stubs.py"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale stubs {stale}; run clients/python/generate_stubs.py and commit the result"
