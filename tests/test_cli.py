"""The ``cliplens`` command line: help for every command, the model list, and the demo quickstart."""

from __future__ import annotations

import pytest

from cliplens.cli import COMMANDS, build_parser, main


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([name, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: cliplens {name}" in capsys.readouterr().out


def test_models_lists_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "Not OpenAI or LAION" in out


def test_demo_quickstart_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--limit", "300", "--epochs", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "zero-shot top-1 on 300 CIFAR-10 test images" in out
    assert "CLIP / CLIP+SAE" in out


def test_errors_are_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--model", "no-such-model", "--limit", "10"]) == 2
    assert "unknown model 'no-such-model': not a registered model id (demo" in capsys.readouterr().err
