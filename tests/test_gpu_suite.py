"""``benchmarks/gpu_suite.py --tiny`` on CPU: every section of its report, with positive figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = (
    "## Baselines: the raw in-process model",
    "## Extraction: `run_extract`",
    "## Encoder serving: EmbedImages over gRPC",
    "## AttributeLatents p50 over gRPC",
    "## SAE training: tokens/s",
)


def numbers(value: Any) -> list[float]:
    """Every int or float in a JSON value."""
    if isinstance(value, dict):
        return [n for item in value.values() for n in numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in numbers(item)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


@pytest.mark.e2e
def test_tiny_suite_reports_every_section(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    command = [sys.executable, "benchmarks/gpu_suite.py", "--tiny", "--out", str(out)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = out.read_text()
    for section in SECTIONS:
        assert section in report
    assert "fp16 | not measured" in report and f"--out {out}" in report
    payload = json.loads(out.with_suffix(".json").read_text())
    measured = {key: payload[key] for key in ("baselines", "extraction", "serving", "sae_training")}
    assert all(n > 0 for n in numbers(measured))
    assert payload["serving"]["attribution"]["direct_port"]["p50_ms"] > 0
    assert payload["sae_training"]["sweep"]["saes"] == 2
