"""The FeatureGateway's direct gRPC port: same answers, errors and auth as the ingress, plus health
and reflection of its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from demo_index import FINAL_SAE, PATCH_SAE
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from serve_setup import TOKEN, ServeApp

from cliplens_client import Client
from cliplens_client.errors import AuthenticationError, InvalidArgumentError, NotFoundError


@pytest.fixture(scope="module")
def direct(serve_app: ServeApp) -> Iterator[Client]:
    with Client(serve_app.feature_address, timeout=120) as c:
        yield c


def same(a: Any, b: Any) -> bool:
    """Equality of client results, numpy arrays included."""
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, (list, tuple)):
        return isinstance(b, type(a)) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    return bool(a == b)


def test_direct_port_answers_like_the_ingress(direct: Client, client: Client, serve_app: ServeApp) -> None:
    latent = serve_app.index.active_latent
    for sae_id in (FINAL_SAE, PATCH_SAE):
        assert same(direct.top_activations(sae_id, latent, k=6), client.top_activations(sae_id, latent, k=6))
    assert direct.top_activations(FINAL_SAE, latent, k=6).source == "redis"
    info = direct.latent_info(FINAL_SAE, 1)
    assert info.labels and same(info, client.latent_info(FINAL_SAE, 1))
    search = direct.search_latents(FINAL_SAE, "a red car", top_n=4)
    assert len(search.matches) == 4 and same(search, client.search_latents(FINAL_SAE, "a red car", top_n=4))


def test_direct_port_errors_name_the_problem(direct: Client, serve_app: ServeApp) -> None:
    with pytest.raises(NotFoundError, match="unknown SAE 'nope'"):
        direct.top_activations("nope", 0)
    with pytest.raises(NotFoundError, match="has no latent 999999"):
        direct.top_activations(FINAL_SAE, 999_999)
    limit = serve_app.settings.limits.max_top_k
    with pytest.raises(InvalidArgumentError, match="k"):
        direct.top_activations(FINAL_SAE, 0, k=limit + 1)
    assert direct.top_activations(FINAL_SAE, serve_app.index.active_latent, k=2).inputs  # still serving


def test_direct_port_auth(serve_app: ServeApp) -> None:
    latent = serve_app.index.active_latent
    for token in (None, "wrong-token"):
        with Client(serve_app.auth_feature_address, token=token) as c, pytest.raises(AuthenticationError):
            c.top_activations(FINAL_SAE, latent)
    with Client(serve_app.auth_feature_address, token=TOKEN) as c:
        assert c.top_activations(FINAL_SAE, latent, k=3).inputs


def test_direct_port_health_and_reflection(serve_app: ServeApp) -> None:
    with grpc.insecure_channel(serve_app.feature_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "cliplens.v1.FeatureService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(service="cliplens.v1.EncoderService"), timeout=30)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {"cliplens.v1.FeatureService", "grpc.health.v1.Health"} <= services
