"""The direct gRPC ports (FeatureGateway's FeatureService, each Attributor's AttributionService): same
answers, errors and auth as the ingress, plus health, reflection, TLS and a concurrency bound of their own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from serve_setup import TOKEN, ServeApp, eventually_ok, held_by_a_watch, outcome, same

from cliplens.demo.catalogue import FINAL_SAE, PATCH_SAE
from cliplens_client import Client, LatentEdit, ObjectKey, RetryPolicy
from cliplens_client.errors import (
    AuthenticationError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)

SERVICES = {"feature": "cliplens.v1.FeatureService", "attribution": "cliplens.v1.AttributionService"}


@pytest.fixture(scope="module")
def direct(serve_app: ServeApp) -> Iterator[Client]:
    with Client(serve_app.feature_address, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def attribution(serve_app: ServeApp) -> Iterator[Client]:
    with Client(serve_app.attribution_address, timeout=120) as c:
        yield c


def addresses(serve_app: ServeApp, port: str) -> tuple[str, str]:
    """(auth off, auth on) addresses of a direct port."""
    if port == "feature":
        return serve_app.feature_address, serve_app.auth_feature_address
    return serve_app.attribution_address, serve_app.auth_attribution_address


def test_direct_port_answers_like_the_ingress(direct: Client, client: Client, serve_app: ServeApp) -> None:
    latent = serve_app.index.active_latent
    for sae_id in (FINAL_SAE, PATCH_SAE):
        assert same(direct.top_activations(sae_id, latent, k=6), client.top_activations(sae_id, latent, k=6))
    assert direct.top_activations(FINAL_SAE, latent, k=6).source == "redis"
    info = direct.latent_info(FINAL_SAE, 1)
    assert info.labels and same(info, client.latent_info(FINAL_SAE, 1))
    search = direct.search_latents(FINAL_SAE, "a red car", top_n=4)
    assert len(search.matches) == 4 and same(search, client.search_latents(FINAL_SAE, "a red car", top_n=4))


def test_attribution_port_answers_like_the_ingress(
    attribution: Client, client: Client, serve_app: ServeApp
) -> None:
    jpeg, texts = serve_app.index.jpegs[0], ["a photo of a cat", "a truck"]
    final = attribution.attribute_latents(FINAL_SAE, jpeg, texts, top_n=5)
    assert len(final) == 2 and all(len(t.latents) == 5 for t in final)
    assert same(final, client.attribute_latents(FINAL_SAE, jpeg, texts, top_n=5))
    maps = attribution.attribute_latents(PATCH_SAE, jpeg, texts[:1], top_n=3, patch_maps=True)
    assert all(s.patch_map is not None for s in maps[0].latents)
    assert same(maps, client.attribute_latents(PATCH_SAE, jpeg, texts[:1], top_n=3, patch_maps=True))
    key = ObjectKey(serve_app.index.keys[1])
    decomposition = attribution.decompose("demo", key, "a photo of a frog")
    assert same(decomposition, client.decompose("demo", key, "a photo of a frog"))
    edits, classes = [LatentEdit(3, "add", 5.0)], ["cat", "dog"]
    steering = attribution.steer(FINAL_SAE, jpeg, edits, class_names=classes)
    assert same(steering, client.steer(FINAL_SAE, jpeg, edits, class_names=classes))


def test_direct_port_errors_name_the_problem(direct: Client, serve_app: ServeApp) -> None:
    with pytest.raises(NotFoundError, match="unknown SAE 'nope'"):
        direct.top_activations("nope", 0)
    with pytest.raises(NotFoundError, match="has no latent 999999"):
        direct.top_activations(FINAL_SAE, 999_999)
    limit = serve_app.settings.limits.max_top_k
    with pytest.raises(InvalidArgumentError, match="k"):
        direct.top_activations(FINAL_SAE, 0, k=limit + 1)
    assert direct.top_activations(FINAL_SAE, serve_app.index.active_latent, k=2).inputs  # still serving


def test_attribution_port_errors_name_the_problem(attribution: Client, serve_app: ServeApp) -> None:
    jpeg = serve_app.index.jpegs[0]
    with pytest.raises(NotFoundError, match="unknown SAE 'nope'"):
        attribution.attribute_latents("nope", jpeg, ["a cat"])
    with pytest.raises(InvalidArgumentError, match="image"):
        attribution.attribute_latents(FINAL_SAE, b"\xff\xd8\xff\xe0 truncated jpeg", ["a cat"])
    with pytest.raises(NotFoundError, match="image.object_key: no image 'missing.jpg'"):
        attribution.attribute_latents(FINAL_SAE, ObjectKey("missing.jpg"), ["a cat"])
    with pytest.raises(InvalidArgumentError, match="include_patch_maps"):
        attribution.attribute_latents(FINAL_SAE, jpeg, ["a cat"], patch_maps=True)
    with pytest.raises(InvalidArgumentError, match="text"):
        attribution.decompose("demo", jpeg, "x" * (serve_app.settings.limits.max_text_chars + 1))
    with pytest.raises(InvalidArgumentError, match=r"edits\[0\].latent"):
        attribution.steer(FINAL_SAE, jpeg, [LatentEdit(999, "add", 1.0)])
    assert attribution.attribute_latents(FINAL_SAE, jpeg, ["a cat"], top_n=2)[0].latents  # still serving


def auth_client(serve_app: ServeApp, port: str, token: str | None, **options: Any) -> Client:
    """A client of the auth-on app's direct port (the attribution one speaks TLS)."""
    _, address = addresses(serve_app, port)
    tls = {"root_certificates": serve_app.auth_attribution_root} if port == "attribution" else {}
    return Client(address, token=token, timeout=120, **tls, **options)


@pytest.mark.parametrize("port", ["feature", "attribution"])
def test_direct_port_auth(serve_app: ServeApp, port: str) -> None:
    def call(c: Client) -> object:
        if port == "feature":
            return c.top_activations(FINAL_SAE, serve_app.index.active_latent, k=3).inputs
        return c.attribute_latents(FINAL_SAE, serve_app.index.jpegs[0], ["a cat"], top_n=2)[0].latents

    for token in (None, "wrong-token"):
        with auth_client(serve_app, port, token) as c, pytest.raises(AuthenticationError):
            call(c)
    with auth_client(serve_app, port, TOKEN) as c:
        assert call(c)


def test_direct_port_tls_refuses_plaintext(serve_app: ServeApp) -> None:
    retry = RetryPolicy(max_attempts=1)
    plaintext = Client(serve_app.auth_attribution_address, token=TOKEN, retry=retry, timeout=10)
    with plaintext as c, pytest.raises(UnavailableError):
        c.attribute_latents(FINAL_SAE, serve_app.index.jpegs[0], ["a cat"])
    with grpc.secure_channel(
        serve_app.auth_attribution_address,
        grpc.ssl_channel_credentials(serve_app.auth_attribution_root),
    ) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("port", ["feature", "attribution"])
def test_direct_port_health_and_reflection(serve_app: ServeApp, port: str) -> None:
    address, _ = addresses(serve_app, port)
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICES[port]):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(service="cliplens.v1.EncoderService"), timeout=30)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {SERVICES[port], "grpc.health.v1.Health"} <= services


def test_attribution_port_beyond_its_concurrency_is_resource_exhausted(serve_app: ServeApp) -> None:
    """The auth app's Attributor port takes one call at a time (max_concurrent_rpcs: 1): while a
    Watch holds it, AttributeLatents is refused; after, it is answered."""
    credentials = grpc.ssl_channel_credentials(serve_app.auth_attribution_root)
    with (
        grpc.secure_channel(serve_app.auth_attribution_address, credentials) as channel,
        auth_client(serve_app, "attribution", TOKEN, retry=RetryPolicy(max_attempts=1)) as client,
    ):

        def attribute() -> object:
            return client.attribute_latents(FINAL_SAE, serve_app.index.jpegs[0], ["a cat"], top_n=3)

        with held_by_a_watch(channel):
            while_held = outcome(attribute)
        after = eventually_ok(lambda: outcome(attribute))  # the server frees the slot when it sees the cancel
    assert (while_held, after) == ("RESOURCE_EXHAUSTED", "ok")
