"""Status codes: INVALID_ARGUMENT naming the field, NOT_FOUND, RESOURCE_EXHAUSTED, UNAUTHENTICATED."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serve_setup import APP, AUTH_APP, TOKEN, ServeApp, held_by_a_watch, outcome

from cliplens.demo.catalogue import FINAL_SAE
from cliplens_client import (
    AuthenticationError,
    Client,
    InvalidArgumentError,
    LatentEdit,
    NotFoundError,
    ObjectKey,
)
from cliplens_client.v1 import (
    attribution_pb2,
    attribution_pb2_grpc,
    common_pb2,
    encoder_pb2,
    encoder_pb2_grpc,
)


@pytest.fixture(scope="module")
def channel(serve_app: ServeApp) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(serve_app.address) as ch:
        yield ch


def raw_error(call: grpc.UnaryUnaryMultiCallable, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, metadata=(("application", APP),), timeout=60)
    return info.value


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (b"\xff\xd8\xff\xe0 truncated jpeg", "images[1]", ""),
        (b"\x89PNG\r\n\x1a\n" + b"x" * 300_000, "images[1]", "exceeds the limit"),
    ],
)
def test_bad_images_name_the_field(
    client: Client, serve_app: ServeApp, data: bytes, field: str, reason: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape(field) + ".*" + reason):
        client.embed_images("demo", [serve_app.index.jpegs[0], data])


def test_other_image_formats_are_refused(serve_app: ServeApp, channel: grpc.Channel) -> None:
    images = [common_pb2.Image(data=serve_app.index.jpegs[0]), common_pb2.Image(data=b"GIF89a no")]
    request = encoder_pb2.EmbedImagesRequest(model_id="demo", images=images)
    error = raw_error(encoder_pb2_grpc.EncoderServiceStub(channel).EmbedImages, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "images[1]: not a JPEG, PNG or WebP image" in error.details()


def test_bad_texts_name_the_field(client: Client, channel: grpc.Channel) -> None:
    with pytest.raises(InvalidArgumentError, match=r"texts\[0\].*exceeds the limit of 200"):
        client.embed_texts("demo", ["x" * 201])
    with pytest.raises(InvalidArgumentError, match=r"texts: give 1 to 8"):
        client.embed_texts("demo", ["a"] * 9)
    stub = encoder_pb2_grpc.EncoderServiceStub(channel)
    error = raw_error(stub.EmbedTexts, encoder_pb2.EmbedTextsRequest(model_id="demo", texts=["ok", "  "]))
    assert (
        error.code() == grpc.StatusCode.INVALID_ARGUMENT and "texts[1]: must not be empty" in error.details()
    )


def test_bad_indices_name_the_field(client: Client, serve_app: ServeApp, channel: grpc.Channel) -> None:
    with pytest.raises(InvalidArgumentError, match=r"edits\[0\].latent: 999"):
        client.steer(FINAL_SAE, serve_app.index.jpegs[0], [LatentEdit(999, "add", 1.0)])
    stub = attribution_pb2_grpc.AttributionServiceStub(channel)
    request = attribution_pb2.SteerRequest(
        sae_id=FINAL_SAE,
        image=common_pb2.Image(data=serve_app.index.jpegs[0]),
        edits=[attribution_pb2.LatentEdit(latent=1, op=attribution_pb2.EDIT_OP_UNSPECIFIED, value=1.0)],
    )
    error = raw_error(stub.Steer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "edits[0].op" in error.details()
    with pytest.raises(InvalidArgumentError, match="include_patch_maps"):
        client.attribute_latents(FINAL_SAE, serve_app.index.jpegs[0], ["a"], patch_maps=True)


def test_unknown_names_are_not_found(client: Client, serve_app: ServeApp) -> None:
    with pytest.raises(NotFoundError, match="model_id: unknown model 'nope'"):
        client.embed_texts("nope", ["a"])
    with pytest.raises(NotFoundError, match="sae_id: unknown SAE 'nope'"):
        client.top_activations("nope", 0)
    with pytest.raises(NotFoundError, match="latent: SAE .* has no latent 256"):
        client.top_activations(FINAL_SAE, 256)
    with pytest.raises(NotFoundError, match=r"images\[0\].object_key: no image 'missing.jpg'"):
        client.embed_images("demo", [ObjectKey("missing.jpg")])


def test_a_bad_request_does_not_affect_the_others(client: Client, serve_app: ServeApp) -> None:
    good, bad = serve_app.index.jpegs[0], b"\xff\xd8\xff\xe0 broken"

    def embed(data: bytes) -> str:
        try:
            client.embed_images("demo", [data])
            return "ok"
        except InvalidArgumentError:
            return "invalid"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(embed, [good, bad] * 8))
    assert outcomes == ["ok", "invalid"] * 8


def test_auth_rejects_missing_and_wrong_tokens(serve_app: ServeApp) -> None:
    for token in (None, "wrong-token"):
        with serve_app.client(AUTH_APP, token=token) as c, pytest.raises(AuthenticationError):
            c.list_saes()


def test_auth_accepts_the_token_and_auth_off_needs_none(serve_app: ServeApp, client: Client) -> None:
    with serve_app.client(AUTH_APP, token=TOKEN) as c:
        assert [s.id for s in c.list_saes()] == [s.id for s in client.list_saes()]
    assert client.list_models()  # the app without auth answers without a token


def test_full_queue_is_resource_exhausted(serve_app: ServeApp) -> None:
    """The auth app's ingress takes one call at a time and queues one more: with one Watch in
    progress, of two further calls one waits in the queue and the other is refused at once; the
    waiting one is answered when the Watch ends."""
    routed = (("application", AUTH_APP),)
    with grpc.insecure_channel(serve_app.address) as channel, ThreadPoolExecutor(2) as pool:
        stub = health_pb2_grpc.HealthStub(channel)

        def check() -> object:
            return stub.Check(health_pb2.HealthCheckRequest(), metadata=routed, timeout=120)

        with held_by_a_watch(channel, routed):
            calls = [pool.submit(outcome, check) for _ in range(2)]
            first = next(as_completed(calls)).result()
        outcomes = sorted(call.result() for call in calls)
    assert first == "RESOURCE_EXHAUSTED" and outcomes == ["RESOURCE_EXHAUSTED", "ok"]
