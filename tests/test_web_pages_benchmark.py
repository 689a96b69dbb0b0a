"""``benchmarks/web_pages.py --quick`` on CPU: every section of its report, positive figures, the
screenshots (Playwright drives Debian's chromium, `make browser`), and every latent page from the cache
(the benchmark fails otherwise)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = (
    "## Latent page from the cache (goal: server time <= 100 ms)",
    "### demo-final-topk",
    "### demo-resid2-patches",
    "## Explain: the page versus the gRPC calls behind it",
    "## Screenshots",
)
SHOTS = ("saes", "latent", "patch-latent", "explain")


@pytest.mark.e2e
def test_quick_run_reports_every_section_and_saves_the_screenshots(tmp_path: Path) -> None:
    out, shots = tmp_path / "web_pages.md", tmp_path / "web"
    command = [
        sys.executable,
        "benchmarks/web_pages.py",
        "--quick",
        "--out",
        str(out),
        "--screenshots",
        str(shots),
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = out.read_text()
    for section in SECTIONS:
        assert section in report
    assert f"--out {out}" in report
    payload = json.loads(out.with_suffix(".json").read_text())
    for sae_id in ("demo-final-topk", "demo-resid2-patches"):
        figures = payload["latent_pages"][sae_id]
        ways = ("page_server", "page_wall", "grpc_sequential", "grpc_concurrent", "direct_sequential")
        assert all(figures[way]["p50_ms"] > 0 and figures[way]["n"] == 20 for way in ways)
    groups = payload["explain"]["groups"]
    assert {name.split(" / ")[1] for name in groups} == {"upload", "key", "all"}
    assert all(g["ratio_page_wall_to_grpc_sequential"] > 0 for g in groups.values())
    for name in SHOTS:
        png = shots / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 1000 < png.stat().st_size < 300 * 1024
