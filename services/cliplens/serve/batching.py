"""Helpers shared by the batched deployments: grouping batch items and tracking queue depth."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, TypeVar

from cliplens.serve.metrics import metrics
from cliplens.serve.settings import BatchSettings

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


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


def record_batch(operation: str, requests: int, items: int) -> None:
    metrics().batch_requests.observe(requests, tags={"operation": operation})
    metrics().batch_items.observe(items, tags={"operation": operation})


def configure_batching(method: Any, settings: BatchSettings) -> None:
    """Apply configured batch settings to a ``@serve.batch`` method (its decorator holds defaults)."""
    method.set_max_batch_size(settings.max_batch_size)
    method.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
