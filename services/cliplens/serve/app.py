"""The application builder named by the Serve config: ``import_path: cliplens.serve.app:build_app``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray.serve import Application

from cliplens.core.errors import InvalidInputError
from cliplens.serve.attributor import Attributor
from cliplens.serve.deployment_defaults import BATCHED, check_batching, deployment_options
from cliplens.serve.encoder import Encoder
from cliplens.serve.feature_gateway import FeatureGateway
from cliplens.serve.ingress import CliplensIngress
from cliplens.serve.sae_runner import SaeRunner
from cliplens.serve.settings import AppSettings

GRPC_SERVICER_FUNCTIONS = [
    "cliplens_client.v1.encoder_pb2_grpc.add_EncoderServiceServicer_to_server",
    "cliplens_client.v1.sae_pb2_grpc.add_SaeServiceServicer_to_server",
    "cliplens_client.v1.attribution_pb2_grpc.add_AttributionServiceServicer_to_server",
    "cliplens_client.v1.features_pb2_grpc.add_FeatureServiceServicer_to_server",
    "cliplens_client.v1.models_pb2_grpc.add_ModelServiceServicer_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
    # The Open Inference Protocol v2 (KServe v2, Triton) for the encoders: cliplens.serve.inference_api.
    "cliplens_client.v1.grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server",
]
# Serve Deployments by name (typed Any: Serve's decorator hides .bind/.options from type checkers).
DEPLOYMENTS: dict[str, Any] = {
    "CliplensIngress": CliplensIngress,
    "Encoder": Encoder,
    "SaeRunner": SaeRunner,
    "Attributor": Attributor,
    "FeatureGateway": FeatureGateway,
}


def build_app(args: dict[str, Any]) -> Application:
    """The cliplens application from the config's ``args`` (see :class:`AppSettings`).

    Deployment options are :data:`DEPLOYMENT_DEFAULTS`; the config's ``deployments`` section
    overrides them (Serve applies it after this).
    """
    return compose(AppSettings.model_validate(args))


def compose(settings: AppSettings, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Application:
    """The application graph with each deployment's defaults and ``overrides`` (by deployment name)."""
    unknown = set(overrides or {}) - set(DEPLOYMENTS)
    if unknown:
        raise InvalidInputError(f"unknown deployments {sorted(unknown)}; known: {', '.join(DEPLOYMENTS)}")
    bound = {}
    for name, deployment in DEPLOYMENTS.items():
        options = deployment_options(name, (overrides or {}).get(name))
        if name in BATCHED:
            check_batching(name, options, getattr(settings, BATCHED[name]).max_batch_size)
        bound[name] = deployment.options(**options)
    attributor = bound["Attributor"].bind(settings)
    gateway = [bound["FeatureGateway"].bind(settings, attributor)] if settings.feature_port.port else []
    return bound["CliplensIngress"].bind(
        settings, bound["Encoder"].bind(settings), bound["SaeRunner"].bind(settings), attributor, gateway
    )
