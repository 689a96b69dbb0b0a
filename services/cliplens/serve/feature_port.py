"""FeatureGateway: FeatureService on its own gRPC port, answered in the replica without Serve's proxy.

A TopActivations lookup is one Redis round trip; through the Serve gRPC proxy it pays two actor hops
as well. The gateway replica runs a plain ``grpc.aio`` server on ``feature_port`` with the same
FeatureService (same code, auth, limits and metrics as the ingress's), grpc.health.v1 and
reflection. The ingress's port 9000 keeps serving FeatureService too; the direct port is the
low-latency path. Replicas on one node share the port (SO_REUSEPORT).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from ray import serve
from ray.serve.handle import DeploymentHandle

from cliplens.serve.auth import TokenAuth
from cliplens.serve.calls import answer
from cliplens.serve.catalog import Catalog
from cliplens.serve.feature_api import FeatureApi
from cliplens.serve.settings import AppSettings
from cliplens.store import open_store
from cliplens_client.v1 import features_pb2, features_pb2_grpc

FEATURE_SERVICE = "cliplens.v1.FeatureService"


class FeatureServicer(features_pb2_grpc.FeatureServiceServicer):
    """grpc.aio servicer over :class:`FeatureApi`."""

    def __init__(self, api: FeatureApi, auth: TokenAuth) -> None:
        self.api, self.auth = api, auth

    async def TopActivations(self, request: Any, context: Any) -> Message:
        return await self._answer("TopActivations", self.api.top_activations, request, context)

    async def LatentInfo(self, request: Any, context: Any) -> Message:
        return await self._answer("LatentInfo", self.api.latent_info, request, context)

    async def SearchLatents(self, request: Any, context: Any) -> Message:
        return await self._answer("SearchLatents", self.api.search_latents, request, context)

    async def _answer(
        self, method: str, handler: Callable[[Any], Awaitable[Message]], request: Any, context: Any
    ) -> Message:
        empty = getattr(features_pb2, f"{method}Response")
        return await answer(method, self.auth, context, empty, lambda: handler(request))


@serve.deployment(name="FeatureGateway", max_ongoing_requests=4, ray_actor_options={"num_cpus": 0.5})
class FeatureGateway:
    async def __init__(self, settings: AppSettings, attributor: DeploymentHandle) -> None:  # type: ignore[misc]  # Ray actors allow it
        store = open_store(settings.store_uri)
        api = FeatureApi(settings, Catalog(settings, store), store, attributor)
        self.server = grpc.aio.server()
        features_pb2_grpc.add_FeatureServiceServicer_to_server(
            FeatureServicer(api, TokenAuth(settings.auth)), self.server
        )
        checker = health.aio.HealthServicer()
        for service in ("", FEATURE_SERVICE):
            await checker.set(service, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(checker, self.server)
        names = (FEATURE_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
        reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), self.server)
        address = f"{settings.feature_port.host}:{settings.feature_port.port}"
        if self.server.add_insecure_port(address) == 0:
            raise RuntimeError(f"FeatureGateway could not listen on {address}")
        await self.server.start()
