"""The Open Inference Protocol v2 (inference.GRPCInferenceService) through Serve's gRPC proxy, called
by tritonclient as a Triton or KServe user would: health, metadata, ModelInfer answers equal to
EmbedImages and EmbedTexts, the protocol's error statuses, and the app's token auth."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serve_setup import APP, AUTH_APP, TOKEN, ServeApp
from tritonclient.utils import InferenceServerException

from cliplens_client import Client

HEADERS = {"application": APP}


@pytest.fixture(scope="module")
def triton_client(serve_app: ServeApp) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(url=serve_app.address) as client:
        yield client


def bytes_input(name: str, elements: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput(name, [len(elements)], "BYTES")
    tensor.set_data_from_numpy(np.array(elements, dtype=np.object_))
    return tensor


def status(call: Callable[[], Any]) -> tuple[str, str]:
    """The status code (``"StatusCode.X"``) and message that tritonclient raised for ``call``."""
    with pytest.raises(InferenceServerException) as info:
        call()
    return str(info.value.status()), str(info.value.message())


def test_server_and_models_are_live_ready_and_described(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live(headers=HEADERS)
    assert triton_client.is_server_ready(headers=HEADERS)
    server = triton_client.get_server_metadata(headers=HEADERS)
    assert (server.name, list(server.extensions)) == ("cliplens", [])
    for name, input_name in (("demo-image", "IMAGE"), ("demo-text", "TEXT")):
        assert triton_client.is_model_ready(name, headers=HEADERS)
        metadata = triton_client.get_model_metadata(name, headers=HEADERS)
        assert (metadata.name, list(metadata.versions)) == (name, ["1"])
        assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [(input_name, "BYTES", [-1])]
        assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
            ("EMBEDDING", "FP32", [-1, 128])
        ]
    assert (
        status(lambda: triton_client.is_model_ready("nope-image", headers=HEADERS))[0]
        == "StatusCode.NOT_FOUND"
    )


def test_health_reports_the_service_serving(serve_app: ServeApp) -> None:
    with grpc.insecure_channel(serve_app.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"),
            metadata=(("application", APP),),
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("normalize", [False, True])
def test_infer_images_equals_embed_images(
    triton_client: triton.InferenceServerClient, client: Client, serve_app: ServeApp, normalize: bool
) -> None:
    jpegs = serve_app.index.jpegs[:3]
    result = triton_client.infer(
        "demo-image",
        [bytes_input("IMAGE", jpegs)],
        outputs=[triton.InferRequestedOutput("EMBEDDING")],
        request_id="images-1",
        parameters={"normalize": normalize},
        headers=HEADERS,
    )
    values = result.as_numpy("EMBEDDING")
    assert values is not None and values.dtype == np.float32 and values.shape == (3, 128)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("demo-image", "1", "images-1")
    expected = client.embed_images("demo", jpegs, normalize=normalize).vectors
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)


def test_infer_texts_equals_embed_texts(triton_client: triton.InferenceServerClient, client: Client) -> None:
    texts = ["a photo of a cat", "ein Foto eines Hundes", "une grenouille verte"]
    result = triton_client.infer(
        "demo-text", [bytes_input("TEXT", [t.encode() for t in texts])], headers=HEADERS
    )
    values = result.as_numpy("EMBEDDING")
    assert values is not None and values.shape == (3, 128)
    np.testing.assert_allclose(values, client.embed_texts("demo", texts).vectors, rtol=1e-5, atol=1e-6)


def test_bad_inputs_get_the_protocols_error_statuses(
    triton_client: triton.InferenceServerClient, serve_app: ServeApp
) -> None:
    def infer(model: str, *inputs: triton.InferInput) -> Callable[[], Any]:
        return lambda: triton_client.infer(model, list(inputs), headers=HEADERS)

    floats = triton.InferInput("IMAGE", [2], "FP32")
    floats.set_data_from_numpy(np.zeros(2, np.float32))
    jpeg = serve_app.index.jpegs[0]
    cases = {
        "unknown model": (infer("nope-image", bytes_input("IMAGE", [jpeg])), "StatusCode.NOT_FOUND", "served: demo-image, demo-text"),
        "wrong datatype": (infer("demo-image", floats), "StatusCode.INVALID_ARGUMENT", "IMAGE.datatype: must be BYTES"),
        "not an image": (infer("demo-image", bytes_input("IMAGE", [jpeg, b"plain text"])), "StatusCode.INVALID_ARGUMENT", "IMAGE[1]: not a JPEG"),
        "undecodable image": (infer("demo-image", bytes_input("IMAGE", [b"\xff\xd8\xff\xe0 truncated jpeg"])), "StatusCode.INVALID_ARGUMENT", "IMAGE[0]"),
        "too many texts": (infer("demo-text", bytes_input("TEXT", [b"a cat"] * 9)), "StatusCode.INVALID_ARGUMENT", "TEXT: give 1 to 8 entries, got 9"),
        "bad UTF-8": (infer("demo-text", bytes_input("TEXT", [b"a cat", b"\xc3\x28"])), "StatusCode.INVALID_ARGUMENT", "TEXT[1]: not UTF-8"),
        "wrong input": (infer("demo-text", bytes_input("IMAGE", [jpeg])), "StatusCode.INVALID_ARGUMENT", "takes input 'TEXT'"),
    }  # fmt: skip
    for case, (call, code, message) in cases.items():
        got_code, got_message = status(call)
        assert got_code == code and message in got_message, (case, got_code, got_message)


def test_the_auth_app_takes_the_token(serve_app: ServeApp, client: Client) -> None:
    with triton.InferenceServerClient(url=serve_app.address) as triton_client:
        without = {"application": AUTH_APP}
        with_token = {**without, "authorization": f"Bearer {TOKEN}"}
        assert (
            status(lambda: triton_client.is_server_live(headers=without))[0] == "StatusCode.UNAUTHENTICATED"
        )
        wrong = {**without, "authorization": "Bearer wrong"}
        assert status(lambda: triton_client.get_model_metadata("demo-text", headers=wrong))[0] == (
            "StatusCode.UNAUTHENTICATED"
        )
        assert triton_client.is_server_live(headers=with_token)
        result = triton_client.infer("demo-text", [bytes_input("TEXT", [b"a cat"])], headers=with_token)
        values = result.as_numpy("EMBEDDING")
        np.testing.assert_allclose(
            values, client.embed_texts("demo", ["a cat"]).vectors, rtol=1e-5, atol=1e-6
        )
