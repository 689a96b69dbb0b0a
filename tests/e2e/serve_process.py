"""``cliplens serve`` as a user runs it: a subprocess, its ready line, its process tree and its stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psutil

READY = "cliplens serve: ready"
START_TIMEOUT_S = 300
STOP_TIMEOUT_S = 30


@dataclass
class ServeProcess:
    """A running ``cliplens serve``; ``lines`` is its output so far (stdout and stderr)."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, args: list[str], cwd: Path) -> ServeProcess:
        process = subprocess.Popen(
            [sys.executable, "-m", "cliplens.cli", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        served = cls(process)
        threading.Thread(target=served._read, daemon=True).start()
        if not served._ready.wait(START_TIMEOUT_S) or process.poll() is not None:
            served.kill_tree()
            raise AssertionError(f"cliplens serve did not get ready:\n{served.output[-4000:]}")
        return served

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def descendants(self) -> list[psutil.Process]:
        """Every process started under this one (Ray's GCS, raylet, workers, the cache server)."""
        return psutil.Process(self.process.pid).children(recursive=True)

    def stop(self, sig: signal.Signals) -> tuple[int, list[str]]:
        """Send ``sig``; the exit code, and the descendants (``name pid``) still alive after
        :data:`STOP_TIMEOUT_S` counted from the signal."""
        tree = self.descendants()
        self.process.send_signal(sig)
        try:
            code = self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = -1
        _, alive = psutil.wait_procs(tree, timeout=0.5)
        return code, [_describe(p) for p in alive if _describe(p)]

    def kill_tree(self) -> None:
        """Clean-up after a failure: kill whatever is left."""
        for process in [*self.descendants(), psutil.Process(self.process.pid)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.process.wait()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if line.startswith(READY):
                self._ready.set()
        self._ready.set()  # exited: start() reports the output


def _describe(process: psutil.Process) -> str:
    """``name pid`` of a process still running; empty once it is gone or a zombie."""
    try:
        return "" if process.status() == psutil.STATUS_ZOMBIE else f"{process.name()} {process.pid}"
    except psutil.NoSuchProcess:
        return ""


def stop_if_running(served: ServeProcess | None) -> None:
    if served is not None and served.process.poll() is None:
        served.kill_tree()
