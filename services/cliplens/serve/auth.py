"""Bearer-token authentication of API calls (``authorization: Bearer <token>`` metadata)."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from pathlib import Path

import grpc

from cliplens.serve.settings import AuthSettings
from cliplens.serve.status import RpcStatusError

_PREFIX = "bearer "


class TokenAuth:
    """Accepts calls carrying one of the configured tokens; with auth off, accepts every call."""

    def __init__(self, settings: AuthSettings) -> None:
        self.enabled = settings.enabled
        self.tokens = tuple(token.encode() for token in _read_tokens(settings)) if self.enabled else ()
        if self.enabled and not self.tokens:
            raise ValueError(
                f"auth is enabled but no token was found in file {settings.token_file!r} "
                f"or environment variable {settings.token_env!r}"
            )

    def check(self, metadata: Iterable[tuple[str, str | bytes]]) -> None:
        """Raise UNAUTHENTICATED unless the metadata holds a valid bearer token."""
        if not self.enabled:
            return
        values = [value for key, value in metadata if key.lower() == "authorization"]
        if not values:
            raise RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>'")
        value = values[0] if isinstance(values[0], str) else values[0].decode(errors="replace")
        if not value.lower().startswith(_PREFIX):
            raise RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, "authorization must be 'Bearer <token>'")
        if not self.valid(value[len(_PREFIX) :].strip()):
            raise RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, "invalid token")

    def valid(self, token: str) -> bool:
        """Whether ``token`` is one of the configured tokens (always true with auth off)."""
        if not self.enabled:
            return True
        given = token.encode()
        # Compare with every token (no early exit) so timing does not tell which one nearly matched.
        matched = False
        for known in self.tokens:
            matched |= hmac.compare_digest(given, known)
        return matched


def _read_tokens(settings: AuthSettings) -> list[str]:
    tokens: list[str] = []
    if settings.token_file:
        lines = Path(settings.token_file).read_text().splitlines()
        tokens += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if settings.token_env:
        tokens += [part.strip() for part in os.environ.get(settings.token_env, "").split(",") if part.strip()]
    return tokens
