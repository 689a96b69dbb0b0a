"""Helpers shared by the batched deployments: grouping batch items, dropping those whose caller's
deadline passed while they queued, and tracking queue depth.

A ``@serve.batch`` method returns one result per item; an item that failed gets its exception as
the result, which the waiting request raises (:func:`raise_if_failed`), so one expired or bad item
never fails the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, TypeVar

from cliplens.serve.metrics import metrics
from cliplens.serve.rpc_frame import expired
from cliplens.serve.settings import BatchSettings
from cliplens.serve.status import DeadlineExceededError

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


def group_indices(items: Sequence[T], key: Callable[[T], K]) -> dict[K, list[int]]:
    """Indices of ``items`` grouped by ``key``, groups in order of first appearance."""
    groups: dict[K, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(key(item), []).append(index)
    return groups


class QueueDepth:
    """Counts requests of one operation waiting for their batch, exported as a gauge."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.waiting = 0

    @contextlib.contextmanager
    def waiting_for_batch(self) -> Iterator[None]:
        self._change(+1)
        try:
            yield
        finally:
            self._change(-1)

    def _change(self, delta: int) -> None:
        self.waiting += delta
        metrics().queue_depth.set(self.waiting, tags={"operation": self.operation})


def in_time(
    operation: str, items: Sequence[T], deadline: Callable[[T], float | None]
) -> tuple[list[Any], list[int]]:
    """One result slot per item, holding :class:`DeadlineExceededError` for items whose deadline
    passed (counted in the expired-requests metric), and the indices of the others, to compute."""
    out: list[Any] = [None] * len(items)
    live = []
    for index, item in enumerate(items):
        if expired(deadline(item)):
            out[index] = DeadlineExceededError(operation)
        else:
            live.append(index)
    if len(live) < len(items):
        metrics().expired_requests.inc(len(items) - len(live), tags={"operation": operation})
    return out, live


def raise_if_failed(result: R | BaseException) -> R:
    if isinstance(result, BaseException):
        raise result
    return result


def record_batch(operation: str, requests: int, items: int) -> None:
    metrics().batch_requests.observe(requests, tags={"operation": operation})
    metrics().batch_items.observe(items, tags={"operation": operation})


def configure_batching(method: Any, settings: BatchSettings) -> None:
    """Apply configured batch settings to a ``@serve.batch`` method (its decorator holds defaults)."""
    method.set_max_batch_size(settings.max_batch_size)
    method.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
