"""The application builder named by the Serve config: ``import_path: cliplens.serve.app:build_app``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray.serve import Application

from cliplens.serve.attributor import Attributor
from cliplens.serve.encoder import Encoder
from cliplens.serve.feature_port import FeatureGateway
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

    Replica counts, autoscaling and resources come from the config's ``deployments`` section.
    """
    return compose(AppSettings.model_validate(args))


def compose(settings: AppSettings, options: Mapping[str, Mapping[str, Any]] | None = None) -> Application:
    """The application graph; ``options`` overrides deployment options by deployment name."""
    bound = {
        name: deployment.options(**dict((options or {}).get(name, {})))
        for name, deployment in DEPLOYMENTS.items()
    }
    attributor = bound["Attributor"].bind(settings)
    gateway = [bound["FeatureGateway"].bind(settings, attributor)] if settings.feature_port.port else []
    return bound["CliplensIngress"].bind(
        settings, bound["Encoder"].bind(settings), bound["SaeRunner"].bind(settings), attributor, gateway
    )
