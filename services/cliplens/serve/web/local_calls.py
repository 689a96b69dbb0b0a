"""The client's rpc methods answered in process by the ingress's API objects: the web pages make the
same calls, with the same checks and typed results, as a remote :class:`cliplens_client.Client`,
without a network hop."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TypeVar

from cliplens.serve.rpc_frame import deadline_scope
from cliplens.serve.transports import Handler, ServiceApi, handler_of
from cliplens_client.api_calls import ApiCalls
from cliplens_client.calls import RpcCall

T = TypeVar("T")


class LocalCalls(ApiCalls):
    """Every rpc of ``apis``, awaited in this process under a deadline of ``timeout_s``.

    Failures propagate as the API raised them (``InvalidInputError``, ``NotFoundError``, ...), and a
    request the client methods reject raises :class:`cliplens_client.InvalidRequestError`.
    """

    def __init__(self, apis: Iterable[ServiceApi], timeout_s: float) -> None:
        self._handlers: dict[str, Handler] = {
            method.name: handler_of(api, method) for api in apis for method in api.service.methods
        }
        self.timeout_s = timeout_s

    async def _call(self, call: RpcCall[T], /) -> T:
        timeout = self.timeout_s if call.timeout is None else call.timeout
        with deadline_scope(time.time() + timeout):
            return call.parse(await self._handlers[call.rpc](call.request))
