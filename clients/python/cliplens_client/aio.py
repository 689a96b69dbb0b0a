"""Asyncio client (grpc.aio): one coroutine per rpc of the cliplens API."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TypeVar

import grpc

from cliplens_client.base_client import BaseClient
from cliplens_client.calls import RpcCall

T = TypeVar("T")


class AsyncClient(BaseClient):
    """Asyncio cliplens client, one ``grpc.aio`` channel per target; use ``async with`` or :meth:`close`.

    Create it inside the running event loop that will use it. Targets and failover are those of
    :class:`~cliplens_client.Client`.

    Every method takes ``timeout`` (seconds, retries included; default: the client's ``timeout``)
    and raises :class:`~cliplens_client.errors.RpcError` subclasses on failure.
    """

    _grpc = grpc.aio

    async def close(self) -> None:
        for target in self._targets:
            await target.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _call(self, call: RpcCall[T], /) -> T:
        attempts = self._attempts(call.rpc, call.timeout)
        while True:
            try:
                return call.parse(attempts.answered(await attempts.send(call.request)))
            except grpc.RpcError as error:
                if delay := attempts.failed(error):
                    await asyncio.sleep(delay)
