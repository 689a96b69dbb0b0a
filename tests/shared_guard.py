"""Guard: the test suite reads only repository files, never the CI machine's ``../shared`` folder.

A user's clone has nothing beside it, so a test that reads ``<repo>/../shared`` passes in CI and fails
for everyone else. CI runs the suite in a fresh clone (``.ci/run``); this guard also catches such a
read where ``../shared`` does exist (a developer's machine, the CI host's own checkout).

A pytest plugin (``pytest_plugins`` of ``tests/conftest.py``). Loading it runs ``install()``, which
adds a ``sys.addaudithook`` hook that records every ``open`` (``open()``, ``io.open``, ``os.open``,
``Path.read_*``), ``os.listdir``, ``os.scandir`` and ``glob.glob`` event whose path lies under
``<repo>/../shared``, and wraps pyarrow's readers (``ParquetFile``, ``ParquetDataset`` and so
``read_table``, ``read_metadata``, ``read_schema``, ``pyarrow.dataset.dataset``), which open files in
C++ without an audit event, to record theirs too. The hook only records, never raises: audit hooks
cannot be removed and run on every audited event of the process. ``pytest_sessionfinish`` below
fails the run, listing the paths, when anything was recorded.

It sees the pytest process only: reads in subprocesses (Ray workers, a CLI started with
``subprocess``) go unseen here and fail in CI's clone instead.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
_PREFIXES = tuple({os.path.abspath(SHARED), os.path.realpath(SHARED)})
_EVENTS = frozenset({"open", "os.listdir", "os.scandir", "glob.glob", "glob.glob/2"})

# (path, the test that was running or "" during collection / session set-up)
recorded: list[tuple[str, str]] = []
_installed = False


def under_shared(path: Any) -> str | None:
    """The absolute form of ``path`` when it lies under ``<repo>/../shared``, else None."""
    if isinstance(path, int) or path is None:  # a file descriptor, or os.listdir() of the cwd
        return None
    absolute = os.path.abspath(os.fsdecode(os.fspath(path)))
    for prefix in _PREFIXES:
        if absolute == prefix or absolute.startswith(prefix + os.sep):
            return absolute
    return None


def note(path: Any) -> None:
    """Record ``path`` (or each path of a list of them) if it lies under ``../shared``; never raises."""
    try:
        paths = path if isinstance(path, list | tuple) else [path]
        for one in paths:
            hit = under_shared(one)
            if hit is not None:
                recorded.append((hit, os.environ.get("PYTEST_CURRENT_TEST", "")))
    except Exception:  # an odd argument (a buffer, a file object): not a path under ../shared
        pass


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event in _EVENTS and args:
        note(args[0])


def _noting(function: Callable[..., Any], position: int, name: str) -> Callable[..., Any]:
    """``function``, first recording its path argument (positional ``position`` or keyword ``name``)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        note(args[position] if len(args) > position else kwargs.get(name))
        return function(*args, **kwargs)

    return wrapper


def install() -> None:
    """Start recording (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    sys.addaudithook(_audit)
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    ds.dataset = _noting(ds.dataset, 0, "source")
    pq.read_metadata = _noting(pq.read_metadata, 0, "where")
    pq.read_schema = _noting(pq.read_schema, 0, "where")
    # Methods: position 1 (after self).
    pq.ParquetFile.__init__ = _noting(pq.ParquetFile.__init__, 1, "source")
    pq.ParquetDataset.__init__ = _noting(pq.ParquetDataset.__init__, 1, "path_or_paths")


def report() -> str:
    """What was read under ``../shared`` (empty when nothing was)."""
    seen: dict[str, str] = {}
    for path, test in recorded:
        seen.setdefault(
            path, test.removesuffix(" (call)").removesuffix(" (setup)").removesuffix(" (teardown)")
        )
    return "\n".join(f"  {path}  ({test or 'outside any test'})" for path, test in sorted(seen.items()))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a test read ``../shared``."""
    offending = report()
    if offending:
        message = f"tests read {SHARED}, which a user's clone does not have:\n{offending}"
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_sep("=", "reads outside the repository (tests/shared_guard.py)", red=True)
            reporter.write_line(message)
        else:
            print(message, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


install()
