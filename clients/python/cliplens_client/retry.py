"""Retry and failover policies, for UNAVAILABLE only, within the call's deadline."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from cliplens_client.errors import InvalidRequestError


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a call that failed with UNAVAILABLE.

    Attempt ``n`` (1-based) that fails waits ``min(max_backoff, initial_backoff * multiplier**(n-1))``
    seconds, shortened by a random fraction of up to ``jitter``, before attempt ``n + 1``.
    ``max_attempts=1`` disables retries. Other status codes are never retried. With several targets
    an attempt is one pass over them (see :class:`FailoverPolicy`): the backoff comes only after every
    target has failed.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidRequestError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not 0 <= self.initial_backoff <= self.max_backoff:
            raise InvalidRequestError(
                f"need 0 <= initial_backoff <= max_backoff, got {self.initial_backoff} and {self.max_backoff}"
            )
        if self.multiplier < 1:
            raise InvalidRequestError(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise InvalidRequestError(f"jitter must be in [0, 1], got {self.jitter}")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return base * (1 - self.jitter * self.rng.random())

    def delay_before_retry(self, attempt: int, code: grpc.StatusCode, deadline: Deadline) -> float | None:
        """Seconds to wait before retrying after ``attempt`` failed with ``code``; ``None``: give up."""
        if code != grpc.StatusCode.UNAVAILABLE or attempt >= self.max_attempts:
            return None
        delay = self.backoff(attempt)
        return delay if delay < deadline.remaining() else None


@dataclass(frozen=True)
class FailoverPolicy:
    """How a client with several targets (addresses, preferred first) moves between them.

    A call goes to the first target that is not cooling down; on UNAVAILABLE it goes at once, without
    a backoff, to the next. A target that failed with UNAVAILABLE cools down for ``cooldown`` seconds:
    calls meanwhile start at the next target and try it last. Once its cool-down is over, calls try it
    first again. The channel to each target of such a client also waits at most ``cooldown`` seconds
    (but at least 0.1 s) between attempts to reconnect, so a target that comes back is used soon after.
    ``clock`` (monotonic seconds) measures the cool-downs and each call's deadline (the time left that
    every attempt is sent with); tests may replace it.
    """

    cooldown: float = 5.0
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cooldown) and self.cooldown >= 0):
            raise InvalidRequestError(
                f"cooldown must be a finite number of seconds >= 0, got {self.cooldown}"
            )


class Deadline:
    """A point in (monotonic) time by which a call, retries included, must finish.

    ``clock`` (monotonic seconds) measures it; the clients use their failover policy's clock.
    """

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not timeout > 0:
            raise InvalidRequestError(f"timeout must be a positive number of seconds, got {timeout}")
        self.timeout = timeout
        self._clock = clock
        self._end = clock() + timeout

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._end - self._clock())
