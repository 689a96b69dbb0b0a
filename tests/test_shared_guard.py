"""The guard of tests/shared_guard.py notices reads of ``../shared`` (whether or not that folder exists)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import shared_guard

PROBE = shared_guard.SHARED / "no-such-dir" / "guard-probe.parquet"


@pytest.fixture(autouse=True)
def forget_probe_reads() -> Iterator[None]:
    """Drop what these tests record, so that their deliberate reads do not fail the whole run."""
    before = len(shared_guard.recorded)
    yield
    del shared_guard.recorded[before:]


def _open_text(path: Path) -> None:
    path.read_text()


def _os_open(path: Path) -> None:
    os.open(path, os.O_RDONLY)


def _relative_open(path: Path) -> None:
    # Relative to the repository, as the old tests spelt it: ../shared/...
    open(os.path.relpath(path), "rb")  # noqa: SIM115


def _listdir(path: Path) -> None:
    os.listdir(path.parent)


@pytest.mark.unit
@pytest.mark.parametrize(
    "read",
    [
        _open_text,
        _os_open,
        _relative_open,
        _listdir,
        pq.read_table,
        pq.ParquetFile,
        pq.read_metadata,
        pq.read_schema,
    ],
    ids=lambda read: read.__name__,
)
def test_guard_records_a_read_under_shared(read: Callable[[Path], Any]) -> None:
    before = len(shared_guard.recorded)
    with pytest.raises(FileNotFoundError):
        read(PROBE)
    paths = [path for path, _ in shared_guard.recorded[before:]]
    assert paths and set(paths) <= {str(PROBE), str(PROBE.parent)}, paths
    assert str(PROBE.parent) in shared_guard.report()
    assert "test_guard_records_a_read_under_shared" in shared_guard.recorded[before][1]


@pytest.mark.unit
def test_guard_ignores_repository_files() -> None:
    before = len(shared_guard.recorded)
    (shared_guard.REPO / "README.md").read_bytes()
    pq.read_table(shared_guard.REPO / "tests" / "data" / "cifar10-test-heldout-64.parquet")
    assert shared_guard.recorded[before:] == []


@pytest.mark.e2e
def test_a_read_under_shared_fails_the_run(tmp_path: Path) -> None:
    """End to end: a passing test that reads ../shared makes pytest exit 1 and name the path."""
    (tmp_path / "test_reads_shared.py").write_text(
        "import pytest\n\n\n"
        "def test_reads_shared():\n"
        "    with pytest.raises(FileNotFoundError):\n"
        f"        open({str(PROBE)!r})\n"
    )
    tests = str(Path(shared_guard.__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "pytest", "-p", "shared_guard", "-p", "no:cacheprovider", "-p", "no:valkey"]
    argv += ["--rootdir", str(tmp_path), str(tmp_path)]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "1 passed" in result.stdout and "reads outside the repository" in result.stdout
    assert f"{PROBE}  (test_reads_shared.py::test_reads_shared)" in result.stdout
