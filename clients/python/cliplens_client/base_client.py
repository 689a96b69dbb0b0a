"""Construction shared by :class:`~cliplens_client.Client` and :class:`~cliplens_client.AsyncClient`."""

from __future__ import annotations

from typing import Any

from cliplens_client.connection import (
    DEFAULT_ADDRESS,
    DEFAULT_APP,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_TIMEOUT_S,
    ConnectionSettings,
    rpc_methods,
)
from cliplens_client.retry import Deadline, RetryPolicy


class BaseClient:
    """Holds the settings and one channel; see :class:`ConnectionSettings` for the arguments."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        token: str | None = None,
        app: str = DEFAULT_APP,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.settings = ConnectionSettings(
            address=address,
            token=token,
            app=app,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            tls=tls,
            root_certificates=root_certificates,
            max_message_bytes=max_message_bytes,
        )
        self._channel = self._open_channel()
        self._methods = rpc_methods(self._channel)

    def _open_channel(self) -> Any:
        raise NotImplementedError

    def _deadline(self, timeout: float | None) -> Deadline:
        return Deadline(self.settings.timeout if timeout is None else timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(address={self.settings.address!r}, app={self.settings.app!r})"
