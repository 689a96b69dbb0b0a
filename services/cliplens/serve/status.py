"""Mapping failures to gRPC status codes; unexpected ones become INTERNAL without internals leaking."""

from __future__ import annotations

import logging

import grpc
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.store.errors import StoreUnavailableError

_log = logging.getLogger(__name__)


class RpcStatusError(Exception):
    """A failure that already knows its status code (e.g. UNAUTHENTICATED)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DeadlineExceededError(RpcStatusError):
    """The caller's deadline passed before its work ran; the work was dropped, not computed."""

    def __init__(self, what: str) -> None:
        super().__init__(grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline exceeded before {what} ran")


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a client sees for ``exc`` (raised here or in another replica)."""
    cause = exc
    if isinstance(exc, RayTaskError) and exc.cause is not None:
        cause = exc.cause
    if isinstance(cause, RpcStatusError):
        return cause.code, cause.message
    if isinstance(cause, NotFoundError):
        return grpc.StatusCode.NOT_FOUND, str(cause)
    if isinstance(cause, InvalidInputError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(cause)
    if isinstance(cause, BackPressureError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, f"server busy, queue full: {cause.message}"
    if isinstance(cause, (RayActorError, DeploymentUnavailableError, StoreUnavailableError)):
        return grpc.StatusCode.UNAVAILABLE, f"a backend is unavailable, retry: {type(cause).__name__}"
    _log.exception("unexpected failure", exc_info=cause)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(cause).__name__}); see the server log"
