"""What :class:`~cliplens_client.Client` and :class:`~cliplens_client.AsyncClient` share: construction
and the channels; the rpc methods come from :class:`~cliplens_client.api_calls.ApiCalls`."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import ClassVar

from cliplens_client.api_calls import ApiCalls
from cliplens_client.connection import (
    DEFAULT_ADDRESS,
    DEFAULT_APP,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_TIMEOUT_S,
    ConnectionSettings,
    open_channel,
)
from cliplens_client.failover import CallAttempts, Target, Targets
from cliplens_client.retry import Deadline, FailoverPolicy, RetryPolicy


class BaseClient(ApiCalls):
    """Holds the settings and one channel per target; see :class:`ConnectionSettings` for the arguments.

    ``address`` is one address, or a sequence of them, preferred first, that a call fails over
    across when one answers UNAVAILABLE (see :class:`~cliplens_client.retry.FailoverPolicy`).

    Each rpc method returns what the subclass's ``_call`` makes of its :class:`RpcCall`: the result
    (``Client``) or a coroutine of it (``AsyncClient``).
    """

    _grpc: ClassVar[ModuleType]  # makes the channels: grpc or grpc.aio

    def __init__(
        self,
        address: str | Sequence[str] = DEFAULT_ADDRESS,
        *,
        token: str | None = None,
        app: str = DEFAULT_APP,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        failover: FailoverPolicy | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.settings = ConnectionSettings(
            address=address if isinstance(address, str) else tuple(address),
            token=token,
            app=app,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            failover=failover or FailoverPolicy(),
            tls=tls,
            root_certificates=root_certificates,
            max_message_bytes=max_message_bytes,
        )
        self._targets = Targets(
            [Target(t, open_channel(self._grpc, t, self.settings)) for t in self.settings.targets],
            self.settings.failover,
        )

    def _attempts(self, rpc: str, timeout: float | None) -> CallAttempts:
        deadline = Deadline(
            self.settings.timeout if timeout is None else timeout, self.settings.failover.clock
        )
        return CallAttempts(rpc, self._targets, self.settings.retry, deadline, self.settings.metadata)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(address={self.settings.address!r}, app={self.settings.app!r})"
