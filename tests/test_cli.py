"""The ``cliplens`` command line: help for every command, the model list, and the demo quickstart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cliplens.cli import COMMANDS, build_parser, main
from cliplens.core.prompts import CIFAR10_CLASSES


@pytest.mark.unit
def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([name, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: cliplens {name}" in capsys.readouterr().out


@pytest.mark.unit
def test_models_lists_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "Not OpenAI or LAION" in out


@pytest.mark.e2e
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """`make demo`'s job in a subprocess (it starts its own Ray, Redis and S3 server, then stops them)."""
    result = subprocess.run(
        [sys.executable, "-m", "cliplens.demo", "--out", str(tmp_path), "--epochs", "3", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "zero-shot top-1 of the demo model on 2000 CIFAR-10 test images" in out
    assert "CLIP / CLIP+SAE" in out and "client: image" in out
    latent_lines = [line for line in out.splitlines() if line.strip().startswith("latent #")]
    assert len(latent_lines) == 4
    for line in latent_lines:  # served from the cache, with real firing rates and class-name labels
        assert "(source: redis)" in line and "top images (source: redis)" in line
        assert "firing rate 0.000" not in line
        labels = line.split("top images (source: redis): ")[1].split(", ")
        assert labels and set(labels) <= set(CIFAR10_CLASSES)
    report = (tmp_path / "report.html").read_text()
    assert report.count("data:image/png;base64,") >= 3 and "Latent attribution" in report
    assert report.count("aria-label='activation histogram'") == 4 and "statistics served from redis" in report


@pytest.mark.unit
def test_errors_are_reported_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topk", "--sae", "absent", "--store", str(tmp_path)]) == 2
    assert "unknown SAE id 'absent'" in capsys.readouterr().err
