"""One API call's frame: authenticate, set the call's deadline, run, map failures to a status code,
record the latency.

Works with Serve's gRPC context and with a plain ``grpc.aio`` servicer context alike. The deadline
is the caller's gRPC deadline where the context knows it (direct ports), else the client's
``cliplens-timeout-ms`` metadata (Serve's proxy does not pass deadlines on); work that is still
queued when it passes is dropped (:func:`expired`), not computed.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from cliplens.serve.auth import TokenAuth
from cliplens.serve.metrics import observe_call
from cliplens.serve.status import DeadlineExceededError, status_of

R = TypeVar("R", bound=Message)
TIMEOUT_METADATA = "cliplens-timeout-ms"
# The running call's deadline (seconds since the epoch: comparable across the machines of a cluster).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("cliplens_deadline", default=None)


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
        with deadline_scope(call_deadline(context)):
            auth.check(context.invocation_metadata() or ())
            if expired(current_deadline()):
                raise DeadlineExceededError(method)
            return await work()
    except Exception as exc:
        code, details = status_of(exc)
        context.set_code(code)
        context.set_details(details)
        return empty()
    finally:
        observe_call(method, code, time.perf_counter() - start)


def call_deadline(context: CallContext) -> float | None:
    """The call's deadline from its context or metadata; ``None`` when the caller set none."""
    remaining = getattr(context, "time_remaining", lambda: None)()
    if remaining is None:
        given = [v for k, v in context.invocation_metadata() or () if k == TIMEOUT_METADATA]
        try:
            remaining = float(given[0]) / 1000 if given else None
        except ValueError:
            remaining = None
    return None if remaining is None else time.time() + remaining


@contextlib.contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Make ``deadline`` the running call's deadline inside the block."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def current_deadline() -> float | None:
    """The deadline of the call running in this task (``None`` outside a call or without one)."""
    return _deadline.get()


def expired(deadline: float | None) -> bool:
    return deadline is not None and time.time() >= deadline
