"""Progress lines with rows/s for long jobs, printed to stderr at most every few seconds."""

from __future__ import annotations

import sys
import time


class Progress:
    """Counts rows and prints ``<label>: done/total rows (pct), rate rows/s`` now and then
    (``<label>: done rows, rate rows/s`` when the total is not known up front).

    The first ``add`` marks the end of start-up (workers, model loads, the first batch's warm-up);
    ``steady_rate`` is the rate of the rows that came after it.
    """

    def __init__(self, label: str, total: int | None, every_s: float = 2.0) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.rows = 0
        self.started = time.monotonic()
        self._last_print = self.started
        self._first: tuple[float, int] | None = None

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.rows / max(self.elapsed_s, 1e-9)

    @property
    def startup_s(self) -> float:
        """Seconds until the first rows arrived (the whole run when none did)."""
        return self._first[0] - self.started if self._first else self.elapsed_s

    @property
    def steady_rate(self) -> float:
        """Rows/s after the first batch; the overall rate when there was only one batch."""
        if self._first is None or self.rows == self._first[1]:
            return self.rate
        return (self.rows - self._first[1]) / max(time.monotonic() - self._first[0], 1e-9)

    def add(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if self._first is None:
            self._first = (now, self.rows)
        if now - self._last_print >= self.every_s:
            self._last_print = now
            done = f"{self.rows:,} rows"
            if self.total is not None:
                done = f"{self.rows:,}/{self.total:,} rows ({100.0 * self.rows / max(self.total, 1):.0f}%)"
            print(f"{self.label}: {done}, {self.rate:,.1f} rows/s", file=sys.stderr, flush=True)
