"""Direct gRPC ports: a service answered inside a replica by a plain ``grpc.aio`` server.

Through the Serve gRPC proxy a call pays two actor hops (proxy -> ingress -> deployment), a few
milliseconds each on a small machine. A replica can also serve its API on a port of its own, with the
same code, auth, limits and metrics as the ingress, plus grpc.health.v1 and reflection. Replicas on
one node share the port (SO_REUSEPORT); port 9000 keeps serving everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cliplens.serve.attribution_api import AttributionApi
from cliplens.serve.auth import TokenAuth
from cliplens.serve.calls import answer
from cliplens.serve.feature_api import FeatureApi
from cliplens.serve.settings import DirectPortSettings
from cliplens_client.v1 import attribution_pb2, attribution_pb2_grpc, features_pb2, features_pb2_grpc


class DirectServicer:
    """Base of the direct servicers: each rpc is one API call framed by :func:`answer`."""

    responses: ModuleType  # the ``*_pb2`` module with the service and each rpc's ``<Method>Response``
    service_name: str  # the service's name in that module
    register: Callable[[Any, grpc.aio.Server], None]  # the generated ``add_<Service>Servicer_to_server``

    @property
    def full_name(self) -> str:
        return str(self.responses.DESCRIPTOR.services_by_name[self.service_name].full_name)

    def __init__(self, auth: TokenAuth) -> None:
        self.auth = auth

    async def _answer(
        self, method: str, handler: Callable[[Any], Awaitable[Message]], request: Any, context: Any
    ) -> Message:
        empty = getattr(self.responses, f"{method}Response")
        return await answer(method, self.auth, context, empty, lambda: handler(request))


class FeatureServicer(DirectServicer, features_pb2_grpc.FeatureServiceServicer):
    """FeatureService over :class:`FeatureApi`."""

    responses, service_name = features_pb2, "FeatureService"
    register = staticmethod(features_pb2_grpc.add_FeatureServiceServicer_to_server)

    def __init__(self, api: FeatureApi, auth: TokenAuth) -> None:
        super().__init__(auth)
        self.api = api

    async def TopActivations(self, request: Any, context: Any) -> Message:
        return await self._answer("TopActivations", self.api.top_activations, request, context)

    async def LatentInfo(self, request: Any, context: Any) -> Message:
        return await self._answer("LatentInfo", self.api.latent_info, request, context)

    async def SearchLatents(self, request: Any, context: Any) -> Message:
        return await self._answer("SearchLatents", self.api.search_latents, request, context)


class AttributionServicer(DirectServicer, attribution_pb2_grpc.AttributionServiceServicer):
    """AttributionService over :class:`AttributionApi`."""

    responses, service_name = attribution_pb2, "AttributionService"
    register = staticmethod(attribution_pb2_grpc.add_AttributionServiceServicer_to_server)

    def __init__(self, api: AttributionApi, auth: TokenAuth) -> None:
        super().__init__(auth)
        self.api = api

    async def AttributeLatents(self, request: Any, context: Any) -> Message:
        return await self._answer("AttributeLatents", self.api.attribute_latents, request, context)

    async def Decompose(self, request: Any, context: Any) -> Message:
        return await self._answer("Decompose", self.api.decompose, request, context)

    async def Steer(self, request: Any, context: Any) -> Message:
        return await self._answer("Steer", self.api.steer, request, context)


async def start_direct_server(servicer: DirectServicer, port: DirectPortSettings) -> grpc.aio.Server:
    """Start a server for ``servicer`` with health checking and reflection on ``port`` (TLS when it
    has a certificate), at most ``port.max_concurrent_rpcs`` calls at once; raises when the port
    cannot be bound."""
    server = grpc.aio.server(maximum_concurrent_rpcs=port.max_concurrent_rpcs)
    servicer.register(servicer, server)
    service = servicer.full_name
    checker = health.aio.HealthServicer()
    for name in ("", service):
        await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    names = (service, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), server)
    address = f"{port.host}:{port.port}"
    credentials = server_credentials(port)
    bound = (
        server.add_insecure_port(address)
        if credentials is None
        else server.add_secure_port(address, credentials)
    )
    if bound == 0:
        raise RuntimeError(f"{service} could not listen on {address}")
    await server.start()
    return server


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
