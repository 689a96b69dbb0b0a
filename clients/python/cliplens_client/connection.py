"""Connection settings shared by the sync and async clients: targets, auth, routing, TLS, deadlines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import grpc

from cliplens_client.errors import InvalidRequestError
from cliplens_client.retry import FailoverPolicy, RetryPolicy
from cliplens_client.v1 import (
    attribution_pb2_grpc,
    encoder_pb2_grpc,
    features_pb2_grpc,
    models_pb2_grpc,
    sae_pb2_grpc,
)

DEFAULT_ADDRESS = "localhost:9000"
DNS_TARGET = "dns:///"  # prefix of an address whose every resolved IP is a server
DEFAULT_APP = "cliplens"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# The time left of a call, in whole milliseconds: the server reads it where Serve's proxy does not pass
# the gRPC deadline on (services/cliplens/serve/rpc_frame.py), and drops queued work once it is past.
TIMEOUT_METADATA = "cliplens-timeout-ms"
STUB_CLASSES = (
    encoder_pb2_grpc.EncoderServiceStub,
    sae_pb2_grpc.SaeServiceStub,
    attribution_pb2_grpc.AttributionServiceStub,
    features_pb2_grpc.FeatureServiceStub,
    models_pb2_grpc.ModelServiceStub,
)


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to call the cliplens API.

    ``address`` is ``host:port``, or ``dns:///host:port`` to resolve every address of the name (a
    headless Kubernetes Service's pods, e.g. the Attributors' direct port) and spread calls
    round-robin over those that accept connections; or a tuple of such targets, preferred first, that
    calls fail over across (see :class:`~cliplens_client.retry.FailoverPolicy`). Every target gets the
    same metadata, TLS settings and deadlines.
    ``app`` is the Ray Serve application, sent as the ``application`` metadata that Serve routes by.
    ``token`` is sent as ``authorization: Bearer <token>``. With ``tls`` (implied by
    ``root_certificates``, PEM bytes; ``None`` uses the system roots) the channel is encrypted.
    ``timeout`` is the default deadline of a call in seconds, retries included.
    """

    address: str | tuple[str, ...] = DEFAULT_ADDRESS
    token: str | None = None
    app: str = DEFAULT_APP
    timeout: float = DEFAULT_TIMEOUT_S
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    failover: FailoverPolicy = field(default_factory=FailoverPolicy)
    tls: bool = False
    root_certificates: bytes | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        if not self.targets:
            raise InvalidRequestError("address must name at least one target")
        for target in self.targets:
            _check_target(target)
        if len(set(self.targets)) < len(self.targets):
            raise InvalidRequestError(f"address lists a target twice: {self.address!r}")
        if self.token is not None and (
            not self.token or not self.token.isascii() or any(c.isspace() for c in self.token)
        ):
            raise InvalidRequestError("token must be a non-empty ASCII string without whitespace")
        if not self.app or not self.app.isascii():
            raise InvalidRequestError(f"app must be a non-empty ASCII string, got {self.app!r}")
        if not isinstance(self.retry, RetryPolicy):
            raise InvalidRequestError(f"retry must be a RetryPolicy, got {type(self.retry).__name__}")
        if not isinstance(self.failover, FailoverPolicy):
            raise InvalidRequestError(
                f"failover must be a FailoverPolicy, got {type(self.failover).__name__}"
            )
        if not self.timeout > 0:
            raise InvalidRequestError(f"timeout must be a positive number of seconds, got {self.timeout}")
        if self.max_message_bytes <= 0:
            raise InvalidRequestError(f"max_message_bytes must be positive, got {self.max_message_bytes}")

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata sent with every call: Serve routing and, when set, the bearer token.

        Each attempt adds the time left of its call's deadline (:func:`call_metadata`).
        """
        routing = (("application", self.app),)
        return routing if self.token is None else (*routing, ("authorization", f"Bearer {self.token}"))

    @property
    def targets(self) -> tuple[str, ...]:
        """The addresses calls go to, preferred first."""
        return (self.address,) if isinstance(self.address, str) else self.address

    @property
    def channel_options(self) -> list[tuple[str, int | str]]:
        """Options of the channel to the preferred (first) target."""
        return self.channel_options_for(self.targets[0])

    def channel_options_for(self, target: str) -> list[tuple[str, int | str]]:
        """Options of the channel to ``target``."""
        options: list[tuple[str, int | str]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
        ]
        if target.startswith(DNS_TARGET):
            options.append(("grpc.lb_policy_name", "round_robin"))
        if len(self.targets) > 1:  # notice a target that is back within about one cool-down
            reconnect_ms = max(100, round(self.failover.cooldown * 1000))
            options.append(("grpc.initial_reconnect_backoff_ms", min(1000, reconnect_ms)))
            options.append(("grpc.max_reconnect_backoff_ms", reconnect_ms))
        return options

    @property
    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials, or ``None`` for a plaintext channel."""
        if not (self.tls or self.root_certificates):
            return None
        return grpc.ssl_channel_credentials(root_certificates=self.root_certificates)


def call_metadata(metadata: Sequence[tuple[str, str]], remaining: float) -> tuple[tuple[str, str], ...]:
    """``metadata`` plus the time left of the attempt's deadline, ``remaining`` seconds, as
    :data:`TIMEOUT_METADATA`: whole milliseconds, rounded down, never negative."""
    return (*metadata, (TIMEOUT_METADATA, str(max(0, math.floor(remaining * 1000)))))


def _check_target(target: object) -> None:
    host_port = target.removeprefix(DNS_TARGET) if isinstance(target, str) else ""
    if not host_port or any(c.isspace() for c in host_port) or "://" in host_port:
        raise InvalidRequestError(
            f"address must be host:port or dns:///host:port (no other scheme), got {target!r}"
        )


def open_channel(api: ModuleType, target: str, settings: ConnectionSettings) -> Any:
    """A channel to ``target`` from ``api``: the ``grpc`` module (blocking) or ``grpc.aio``."""
    options = settings.channel_options_for(target)
    credentials = settings.credentials
    if credentials is None:
        return api.insecure_channel(target, options=options)
    return api.secure_channel(target, credentials, options=options)


def rpc_methods(channel: Any) -> dict[str, Any]:
    """Every rpc of the API by name (names are unique across services), bound to ``channel``."""
    methods: dict[str, Any] = {}
    for stub_class in STUB_CLASSES:
        methods.update(vars(stub_class(channel)))
    return methods
