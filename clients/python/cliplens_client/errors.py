"""Errors the client raises: bad arguments, failed calls (by gRPC status) and malformed answers."""

from __future__ import annotations

from collections.abc import Sequence

import grpc


class CliplensClientError(Exception):
    """Base class of every error raised on purpose by ``cliplens_client``."""


class InvalidRequestError(CliplensClientError, ValueError):
    """An argument cannot be turned into a valid request; nothing was sent."""


class MalformedResponseError(CliplensClientError):
    """The server answered with a message that breaks the contract."""


class RpcError(CliplensClientError):
    """A call failed with a gRPC status other than OK.

    ``attempts`` counts the calls sent; ``targets`` names, in order, the targets they went to when the
    client has several (it is empty for a client with one address).
    """

    def __init__(
        self,
        rpc: str,
        code: grpc.StatusCode,
        details: str,
        attempts: int = 1,
        targets: Sequence[str] = (),
    ) -> None:
        self.rpc = rpc
        self.code = code
        self.details = details
        self.attempts = attempts
        self.targets = tuple(targets)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        where = f" on {', '.join(self.targets)}" if self.targets else ""
        super().__init__(f"{rpc} failed with {code.name}{tries}{where}: {details or 'no details'}")


class InvalidArgumentError(RpcError):
    """The server rejected the request (INVALID_ARGUMENT, OUT_OF_RANGE or FAILED_PRECONDITION)."""


class NotFoundError(RpcError):
    """A named model, SAE, latent or image key does not exist (NOT_FOUND)."""


class AuthenticationError(RpcError):
    """The token is missing, wrong or lacks permission (UNAUTHENTICATED or PERMISSION_DENIED)."""


class UnavailableError(RpcError):
    """No target could be reached or each was overloaded (UNAVAILABLE), after all retries."""


class DeadlineExceededError(RpcError):
    """The call did not finish within its deadline (DEADLINE_EXCEEDED)."""


_BY_CODE: dict[grpc.StatusCode, type[RpcError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: AuthenticationError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def from_grpc(
    rpc: str, error: grpc.RpcError, attempts: int, timeout: float, targets: Sequence[str] = ()
) -> RpcError:
    """The client error for a failed call of ``rpc`` (``timeout`` is the call's deadline in seconds)."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"no answer within the {timeout:g} s deadline ({details or 'deadline exceeded'})"
    return _BY_CODE.get(code, RpcError)(rpc, code, details, attempts, targets)
