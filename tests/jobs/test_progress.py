"""Progress of long jobs: start-up ends with the first rows; the steady rate leaves that batch out."""

from __future__ import annotations

import pytest

from cliplens.jobs import progress as progress_module
from cliplens.jobs.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_startup_and_steady_rate(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    progress = Progress("extract", total=400, every_s=1.0)
    clock.now += 30.0  # workers start, models load, the first batch runs
    progress.add(100)
    for _ in range(3):
        clock.now += 2.0
        progress.add(100)
    assert progress.startup_s == pytest.approx(30.0)
    assert progress.steady_rate == pytest.approx(300 / 6.0)
    assert progress.rate == pytest.approx(400 / 36.0)
    assert "extract: 400/400 rows (100%)" in capsys.readouterr().err


def test_one_batch_has_no_steady_part(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    progress = Progress("topk", total=10)
    assert progress.startup_s == 0.0 and progress.steady_rate == 0.0
    clock.now += 5.0
    progress.add(10)
    assert progress.steady_rate == pytest.approx(progress.rate) == pytest.approx(2.0)


def test_unknown_total_prints_rows_without_a_share(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    progress = Progress("extract", total=None, every_s=1.0)
    clock.now += 2.0
    progress.add(50)
    assert "extract: 50 rows, 25.0 rows/s" in capsys.readouterr().err
