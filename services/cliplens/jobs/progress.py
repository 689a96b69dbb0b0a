"""Progress lines with rows/s for long jobs, printed to stderr at most every few seconds."""

from __future__ import annotations

import sys
import time


class Progress:
    """Counts rows and prints ``<label>: done/total rows (pct), rate rows/s`` now and then."""

    def __init__(self, label: str, total: int, every_s: float = 2.0) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.rows = 0
        self.started = time.monotonic()
        self._last_print = self.started

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.rows / max(self.elapsed_s, 1e-9)

    def add(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self._last_print >= self.every_s:
            self._last_print = now
            percent = 100.0 * self.rows / max(self.total, 1)
            print(
                f"{self.label}: {self.rows:,}/{self.total:,} rows ({percent:.0f}%), {self.rate:,.1f} rows/s",
                file=sys.stderr,
                flush=True,
            )
