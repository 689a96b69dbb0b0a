"""One API call's frame: authenticate, run, map failures to a status code, record the latency.

Works with Serve's gRPC context and with a plain ``grpc.aio`` servicer context alike.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from cliplens.serve.auth import TokenAuth
from cliplens.serve.metrics import observe_call
from cliplens.serve.status import status_of

R = TypeVar("R", bound=Message)


class CallContext(Protocol):
    """What a call needs of its gRPC context (Serve's ``RayServegRPCContext`` or grpc.aio's)."""

    def invocation_metadata(self) -> Sequence[Any] | None: ...

    def set_code(self, code: grpc.StatusCode) -> None: ...

    def set_details(self, details: str) -> None: ...


async def answer(
    method: str, auth: TokenAuth, context: CallContext, empty: type[R], work: Callable[[], Awaitable[R]]
) -> R:
    """``work()``'s response; on failure an empty response with the status code and message set."""
    start = time.perf_counter()
    code = grpc.StatusCode.OK
    try:
        auth.check(context.invocation_metadata() or ())
        return await work()
    except Exception as exc:
        code, details = status_of(exc)
        context.set_code(code)
        context.set_details(details)
        return empty()
    finally:
        observe_call(method, code, time.perf_counter() - start)
