"""Blocking client: one method per rpc of the cliplens API."""

from __future__ import annotations

import time
from types import TracebackType
from typing import TypeVar

import grpc

from cliplens_client.base_client import BaseClient
from cliplens_client.calls import RpcCall

T = TypeVar("T")


class Client(BaseClient):
    """Blocking cliplens client, one gRPC channel per target; use it as a context manager or :meth:`close`.

    ``Client("localhost:9000")`` calls one address; ``Client(["localhost:9002", "localhost:9000"])``
    sends each call to the first of the targets that is up and fails over, in order, on UNAVAILABLE.

    Every method takes ``timeout`` (seconds, retries included; default: the client's ``timeout``)
    and raises :class:`~cliplens_client.errors.RpcError` subclasses on failure.
    """

    _grpc = grpc

    def close(self) -> None:
        for target in self._targets:
            target.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, call: RpcCall[T], /) -> T:
        attempts = self._attempts(call.rpc, call.timeout)
        while True:
            try:
                return call.parse(attempts.answered(attempts.send(call.request)))
            except grpc.RpcError as error:
                if delay := attempts.failed(error):
                    time.sleep(delay)
