"""Direct gRPC ports: services answered inside a replica by a plain ``grpc.aio`` server.

Through the Serve gRPC proxy a call pays two actor hops (proxy -> ingress -> deployment), a few
milliseconds each on a small machine. A replica can also serve its API classes on a port of its
own, with the same generated handlers, auth, limits and metrics as the ingress
(:mod:`cliplens.serve.transports`), plus grpc.health.v1 and reflection. Replicas on one node share
the port (SO_REUSEPORT); port 9000 keeps serving everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cliplens.serve.auth import TokenAuth
from cliplens.serve.settings import DirectPortSettings
from cliplens.serve.transports import ServiceApi, grpc_handler

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class DirectPortHost:
    """A running direct port; :meth:`start` it in a replica's ``__init__``."""

    def __init__(self, server: grpc.aio.Server, services: list[str]) -> None:
        self.server, self.services = server, services

    @classmethod
    async def start(
        cls, apis: Sequence[ServiceApi], auth: TokenAuth, port: DirectPortSettings
    ) -> DirectPortHost:
        """Serve ``apis`` with health checking and reflection on ``port`` (TLS when it has a
        certificate), at most ``port.max_concurrent_rpcs`` calls at once (RESOURCE_EXHAUSTED beyond);
        raises when the port cannot be bound."""
        server = grpc.aio.server(maximum_concurrent_rpcs=port.max_concurrent_rpcs)
        server.add_generic_rpc_handlers([grpc_handler(api, auth) for api in apis])
        services = [api.service.full_name for api in apis]
        checker = health.aio.HealthServicer()
        for name in ("", *services):
            await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(checker, server)
        reflection.enable_server_reflection((*services, HEALTH_SERVICE, reflection.SERVICE_NAME), server)
        address = f"{port.host}:{port.port}"
        credentials = server_credentials(port)
        bound = (
            server.add_insecure_port(address)
            if credentials is None
            else server.add_secure_port(address, credentials)
        )
        if bound == 0:
            raise RuntimeError(f"{', '.join(services)} could not listen on {address}")
        await server.start()
        return cls(server, services)


def server_credentials(port: DirectPortSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from the port's PEM files, or ``None`` for plaintext."""
    if port.tls_cert_file is None or port.tls_key_file is None:
        return None
    pem = {}
    for name, path in (("tls_cert_file", port.tls_cert_file), ("tls_key_file", port.tls_key_file)):
        try:
            pem[name] = Path(path).read_bytes()
        except OSError as exc:
            raise RuntimeError(f"{name}: cannot read {path}: {exc.strerror}") from exc
    return grpc.ssl_server_credentials([(pem["tls_key_file"], pem["tls_cert_file"])])
