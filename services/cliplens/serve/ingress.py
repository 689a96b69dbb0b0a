"""The ingress: every cliplens service behind Serve's gRPC proxy (port 9000), plus grpc.health.v1 and
the Open Inference Protocol v2 (``inference.GRPCInferenceService``, :mod:`cliplens.serve.inference_api`),
and the web pages at ``/ui`` on Serve's HTTP proxy (:mod:`cliplens.serve.web`).

Its rpc methods are generated from the protos (:mod:`cliplens.serve.transports`); each one calls the
API object of its service, whose backends are handles to the other deployments. The web pages make
the same calls in process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve.grpc_util import RayServegRPCContext
from ray.serve.handle import DeploymentHandle

from cliplens.serve.attribution_api import AttributionApi
from cliplens.serve.auth import TokenAuth
from cliplens.serve.backends import AttributionBackend, EncoderBackend, SaeBackend, remote
from cliplens.serve.catalog import Catalog
from cliplens.serve.encoder_api import EncoderApi
from cliplens.serve.feature_api import FeatureApi
from cliplens.serve.feature_lookups import FeatureLookups
from cliplens.serve.inference_api import InferenceApi
from cliplens.serve.model_api import ModelApi
from cliplens.serve.request_checks import RequestImages
from cliplens.serve.sae_api import SaeApi
from cliplens.serve.settings import AppSettings
from cliplens.serve.transports import with_rpc_methods
from cliplens.serve.web.local_calls import LocalCalls
from cliplens.serve.web.pages import WebPages
from cliplens.serve.web.routes import web_app
from cliplens.serve.web.sessions import Sessions
from cliplens.serve.web.ui import WebUi

APIS = (EncoderApi, SaeApi, AttributionApi, FeatureApi, ModelApi, InferenceApi)
SERVICES = tuple(api.service.full_name for api in APIS)
# Attributor and SaeRunner methods that run on a replica holding the SAE named by their first argument.
SAE_ROUTED = ("attribute", "steer", "labels", "neighbours", "search", "encode", "decode", "reconstruct")


@serve.deployment(name="CliplensIngress")
@serve.ingress(web_app)
@with_rpc_methods([api.service for api in APIS])
class CliplensIngress:
    def __init__(
        self,
        settings: AppSettings,
        encoder: DeploymentHandle,
        sae: DeploymentHandle,
        attributor: DeploymentHandle,
        companions: Sequence[DeploymentHandle] = (),
    ) -> None:
        """``companions``: deployments that serve beside the ingress (the FeatureGateway's direct
        port); they are bound here only so that they are part of the application."""
        store = settings.store()
        catalog = Catalog(settings, store)
        images = RequestImages(settings.limits, settings.image_store())
        encoders: EncoderBackend = remote(encoder)
        attributors: AttributionBackend = remote(attributor, SAE_ROUTED)
        saes: SaeBackend = remote(sae, SAE_ROUTED)
        features = FeatureLookups(store, settings.cache_url, settings.redis_timeout_s)
        apis = (
            EncoderApi(settings, catalog, images, encoders),
            SaeApi(settings, catalog, images, encoders, saes),
            AttributionApi(settings, catalog, images, attributors),
            FeatureApi(settings, catalog, features, attributors),
            ModelApi(catalog, encoders),
        )
        inference = InferenceApi(settings, catalog, images, encoders)
        self.apis = {api.service.full_name: api for api in (*apis, inference)}
        self.auth = TokenAuth(settings.auth)
        pages = WebPages(LocalCalls(apis, settings.web.timeout_s), images, settings.web)
        sessions = Sessions(self.auth, settings.web.session_hours * 3600)
        self.web = WebUi(pages, sessions, settings.web, settings.limits)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext
    ) -> Message:
        """grpc.health.v1: SERVING for the whole server ("") and each cliplens service; no auth."""
        if request.service and request.service not in SERVICES:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service '{request.service}'")
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext
    ) -> AsyncIterator[Message]:
        """grpc.health.v1 Watch: the status now (SERVICE_UNKNOWN for an unknown service), then the
        stream stays open until the client leaves. A replica's status does not change while it runs;
        one that stops ends the stream, which watchers read as a change. No auth."""
        known = not request.service or request.service in SERVICES
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if known
            else health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        )
        yield health_pb2.HealthCheckResponse(status=status)
        await asyncio.Event().wait()
