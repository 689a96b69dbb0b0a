"""Iterating in a background thread, a few items ahead of the consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar, cast

from cliplens.core.errors import InvalidInputError

T = TypeVar("T")
_DONE = object()


@dataclass(frozen=True)
class _Failure:
    error: BaseException


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield ``items`` while a daemon thread produces up to ``depth`` of them ahead.

    An exception in the producer is re-raised in the consumer; closing the iterator early
    stops the producer at its next item.
    """
    if depth < 1:
        raise InvalidInputError(f"prefetch depth must be at least 1, got {depth}")
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as exc:
            offer(_Failure(exc))

    thread = threading.Thread(target=produce, name="cliplens-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield cast(T, item)
    finally:
        stop.set()
        thread.join()
