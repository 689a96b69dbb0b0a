"""InferenceApi: the Open Inference Protocol v2 over the Encoder, against a fake Encoder and without Ray.

Requests are framed as the ingress frames them (auth, status codes); tritonclient builds some of them
and reads the answers, as it does on the wire."""

from __future__ import annotations

import asyncio
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from fakes import MODEL, FakeEncoder, catalog, settings
from google.protobuf.message import Message
from tritonclient.grpc import service_pb2 as triton_pb2
from tritonclient.grpc._utils import _get_inference_request  # what InferenceServerClient.infer sends
from tritonclient.utils import InferenceServerException

from cliplens import __version__
from cliplens.serve.auth import TokenAuth
from cliplens.serve.inference_api import InferenceApi, unpack_bytes
from cliplens.serve.ingress import SERVICES
from cliplens.serve.request_checks import RequestImages
from cliplens.serve.settings import AuthSettings
from cliplens.serve.transports import call_api, grpc_handler
from cliplens.store import LocalStore
from cliplens_client.v1 import grpc_predict_v2_pb2 as v2
from image_bytes import png

SERVICE = "inference.GRPCInferenceService"
LIMITS = {"max_images": 2, "max_texts": 3, "max_text_chars": 10}
Infer = v2.ModelInferRequest
Tensor = v2.ModelInferRequest.InferInputTensor


@dataclass
class FakeContext:
    """What the call frame needs of a gRPC context."""

    metadata: list[tuple[str, str]] = field(default_factory=list)
    code: grpc.StatusCode | None = None
    details: str = ""

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


def inference_api(store: LocalStore, encoder: FakeEncoder | None = None) -> InferenceApi:
    app = settings(store, limits=LIMITS)
    return InferenceApi(app, catalog(store), RequestImages(app.limits, None), encoder or FakeEncoder())


def call(
    api: InferenceApi, rpc: str, request: Message, metadata: list[tuple[str, str]] | None = None, **auth: Any
) -> tuple[Any, grpc.StatusCode | None, str]:
    """``rpc`` framed as the ingress frames it: the response, the status code set (None: OK), details."""
    context = FakeContext(metadata or [])
    response = asyncio.run(call_api(api, TokenAuth(AuthSettings(**auth)), SERVICE, rpc, request, context))
    return response, context.code, context.details


def raw(*elements: bytes) -> bytes:
    """BYTES elements in the protocol's raw layout: a 4-byte little-endian length before each."""
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def image_request(*elements: bytes, **fields: Any) -> v2.ModelInferRequest:
    tensor = Tensor(name="IMAGE", datatype="BYTES", shape=[len(elements)])
    return Infer(model_name=f"{MODEL}-image", inputs=[tensor], raw_input_contents=[raw(*elements)], **fields)


def text_request(*texts: str) -> v2.ModelInferRequest:
    tensor = Tensor(name="TEXT", datatype="BYTES", shape=[len(texts)])
    tensor.contents.bytes_contents.extend(text.encode() for text in texts)
    return Infer(model_name=f"{MODEL}-text", inputs=[tensor])


def embeddings(response: v2.ModelInferResponse) -> np.ndarray:
    """The EMBEDDING output as tritonclient reads it."""
    parsed = triton_pb2.ModelInferResponse.FromString(response.SerializeToString())
    values = triton.InferResult(parsed).as_numpy("EMBEDDING")
    assert values is not None
    return values


def test_the_service_is_served_and_health_checked() -> None:
    assert SERVICE in SERVICES
    assert InferenceApi.service.full_name == SERVICE
    assert [m.name for m in InferenceApi.service.methods] == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]


def test_the_stubs_live_beside_another_copy_of_the_protocol() -> None:
    """tritonclient defines the same inference.* names in protobuf's default pool; ours are in a pool
    of their own, so both import in one process and read each other's bytes."""
    assert v2.ModelInferRequest.DESCRIPTOR.full_name == triton_pb2.ModelInferRequest.DESCRIPTOR.full_name
    assert v2.DESCRIPTOR.pool is not triton_pb2.DESCRIPTOR.pool
    request = v2.ModelInferRequest(model_name="m-text", raw_input_contents=[raw(b"a")])
    assert triton_pb2.ModelInferRequest.FromString(request.SerializeToString()).model_name == "m-text"


def test_server_health_and_metadata(store: LocalStore) -> None:
    api = inference_api(store)
    assert call(api, "ServerLive", v2.ServerLiveRequest())[0].live
    assert call(api, "ServerReady", v2.ServerReadyRequest())[0].ready
    metadata, code, _ = call(api, "ServerMetadata", v2.ServerMetadataRequest())
    assert code is None
    assert (metadata.name, metadata.version, list(metadata.extensions)) == ("cliplens", __version__, [])


@pytest.mark.parametrize(("suffix", "input_name"), [("image", "IMAGE"), ("text", "TEXT")])
def test_model_ready_and_metadata_of_each_encoder(store: LocalStore, suffix: str, input_name: str) -> None:
    encoder = FakeEncoder(width=6)
    api = inference_api(store, encoder)
    name = f"{MODEL}-{suffix}"
    for version in ("", "1"):
        assert call(api, "ModelReady", v2.ModelReadyRequest(name=name, version=version))[0].ready
        metadata, code, _ = call(api, "ModelMetadata", v2.ModelMetadataRequest(name=name, version=version))
        assert code is None
        assert (metadata.name, list(metadata.versions), metadata.platform) == (name, ["1"], "cliplens")
        assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [(input_name, "BYTES", [-1])]
        assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
            ("EMBEDDING", "FP32", [-1, 6])
        ]
    assert encoder.calls == [("facts", None)]  # the width is asked once


@pytest.mark.parametrize(
    ("rpc", "request_", "message"),
    [
        ("ModelReady", v2.ModelReadyRequest(name=MODEL), f"unknown model '{MODEL}'; served: m-image, m-text"),
        ("ModelReady", v2.ModelReadyRequest(name="other-image"), "unknown model 'other-image'"),
        ("ModelMetadata", v2.ModelMetadataRequest(name="m-audio"), "unknown model 'm-audio'"),
        ("ModelMetadata", v2.ModelMetadataRequest(name="m-text", version="2"), "model 'm-text' has no version '2'"),
        ("ModelInfer", Infer(model_name="m-video"), r"model_name: unknown model 'm-video'; served: m-image, m-text"),
        ("ModelInfer", Infer(model_name="m-image", model_version="0"), "has no version '0'"),
    ],
)  # fmt: skip
def test_unknown_models_and_versions_are_not_found(
    store: LocalStore, rpc: str, request_: Message, message: str
) -> None:
    encoder = FakeEncoder()
    _, code, details = call(inference_api(store, encoder), rpc, request_)
    assert code == grpc.StatusCode.NOT_FOUND
    assert message in details
    assert encoder.calls == []


def test_infer_images_from_raw_contents_as_the_encoder_answers(store: LocalStore) -> None:
    encoder = FakeEncoder()
    response, code, _ = call(
        inference_api(store, encoder), "ModelInfer", image_request(png(), png(), id="r-7")
    )
    assert code is None
    assert (response.model_name, response.model_version, response.id) == ("m-image", "1", "r-7")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [("EMBEDDING", "FP32", [2, 4])]
    values = embeddings(response)
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, [[1] * 4, [2] * 4])  # the fake's rows: [i, i, ...] + 1
    assert encoder.calls == [("embed_images", ["IMAGE[0]", "IMAGE[1]"])]


def test_raw_and_typed_contents_decode_the_same(store: LocalStore) -> None:
    typed_images = Tensor(name="IMAGE", datatype="BYTES", shape=[2])
    typed_images.contents.bytes_contents.extend([png(), png(12)])
    raw_texts = Tensor(name="TEXT", datatype="BYTES", shape=[2])
    pairs = [
        (image_request(png(), png(12)), Infer(model_name="m-image", inputs=[typed_images])),
        (
            text_request("a cat", "ein Hund ü"),
            Infer(
                model_name="m-text",
                inputs=[raw_texts],
                raw_input_contents=[raw(b"a cat", "ein Hund ü".encode())],
            ),
        ),
    ]
    for raw_request, typed_request in pairs:
        encoder = FakeEncoder()
        api = inference_api(store, encoder)
        first, second = call(api, "ModelInfer", raw_request)[0], call(api, "ModelInfer", typed_request)[0]
        assert first == second and first.raw_output_contents
        assert encoder.calls[0] == encoder.calls[1]
    assert encoder.calls[0] == ("embed_texts", ["a cat", "ein Hund ü"])


def test_a_request_tritonclient_builds_is_answered(store: LocalStore) -> None:
    """tritonclient's own request (raw contents, its parameters) over the wire format, both ways."""
    texts = triton.InferInput("TEXT", [3], "BYTES")
    texts.set_data_from_numpy(np.array(["a", "b", "c"], dtype=np.object_))
    request = _get_inference_request(
        model_name="m-text",
        inputs=[texts],
        model_version="",
        request_id="42",
        outputs=[triton.InferRequestedOutput("EMBEDDING")],
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=1,
        timeout=1000,
        parameters={"normalize": True},
    )
    response, code, details = call(
        inference_api(store), "ModelInfer", Infer.FromString(request.SerializeToString())
    )
    assert code is None, details
    assert response.id == "42"
    np.testing.assert_allclose(embeddings(response), 0.5)  # [i, i, i, i] normalised


def test_normalize_is_off_by_default_and_must_be_a_bool(store: LocalStore) -> None:
    api = inference_api(store)
    np.testing.assert_array_equal(
        embeddings(call(api, "ModelInfer", text_request("a", "b"))[0])[:, 0], [1, 2]
    )
    request = text_request("a")
    request.parameters["normalize"].string_param = "yes"
    _, code, details = call(api, "ModelInfer", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "parameters.normalize: must be a bool" in details


def _with(request: v2.ModelInferRequest, change: Any) -> v2.ModelInferRequest:
    change(request)
    return request


def _typed_and_raw(request: v2.ModelInferRequest) -> None:
    request.inputs[0].contents.bytes_contents.append(png())


def _fp32(request: v2.ModelInferRequest) -> None:
    request.inputs[0].datatype = "FP32"


def _fp32_contents(request: v2.ModelInferRequest) -> None:
    request.ClearField("raw_input_contents")
    request.inputs[0].contents.fp32_contents.append(1.0)


def _shared_memory(request: v2.ModelInferRequest) -> None:
    request.inputs[0].parameters["shared_memory_region"].string_param = "region"


def _second_raw(request: v2.ModelInferRequest) -> None:
    request.raw_input_contents.append(b"")


def _output(name: str, **parameters: int) -> Any:
    def change(request: v2.ModelInferRequest) -> None:
        output = request.outputs.add(name=name)
        for key, value in parameters.items():
            output.parameters[key].int64_param = value

    return change


def _shape(*shape: int) -> Any:
    def change(request: v2.ModelInferRequest) -> None:
        request.inputs[0].ClearField("shape")
        request.inputs[0].shape.extend(shape)

    return change


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (Infer(model_name="m-image"), "inputs: model 'm-image' takes one input, IMAGE; got 0"),
        (_with(image_request(png()), lambda r: r.inputs.add(name="IMAGE")), "takes one input, IMAGE; got 2"),
        (_with(image_request(png()), lambda r: setattr(r.inputs[0], "name", "TEXT")), "takes input 'IMAGE', got 'TEXT'"),
        (_with(image_request(png()), _fp32), "IMAGE.datatype: must be BYTES, got 'FP32'"),
        (_with(image_request(png()), _fp32_contents), "a BYTES tensor's elements go in bytes_contents"),
        (_with(image_request(png()), _shared_memory), "shared memory is not supported"),
        (_with(image_request(png()), _shape(1, 1)), r"IMAGE.shape: must be \[n\], got \[1, 1\]"),
        (_with(image_request(png()), _shape(2)), r"IMAGE: shape \[2\] but 1 elements"),
        (_with(image_request(png()), _shape(-1)), r"must be \[n\], got \[-1\]"),
        (image_request(), "IMAGE: give 1 to 2 entries, got 0"),
        (image_request(png(), png(), png()), "IMAGE: give 1 to 2 entries, got 3"),
        (_with(image_request(png()), _typed_and_raw), "give raw_input_contents or contents, not both"),
        (_with(image_request(png()), _second_raw), "raw_input_contents: one entry per input"),
        (Infer(model_name="m-image", inputs=[Tensor(name="IMAGE", datatype="BYTES", shape=[1])], raw_input_contents=[b"\x05\x00"]), "raw contents end inside the length of element 0"),
        (Infer(model_name="m-image", inputs=[Tensor(name="IMAGE", datatype="BYTES", shape=[1])], raw_input_contents=[b"\x09\x00\x00\x00abc"]), "element 0 is 9 bytes long but 3 remain"),
        (image_request(b"GIF89a..."), r"IMAGE\[0\]: not a JPEG, PNG or WebP image"),
        (image_request(png(), b""), r"IMAGE\[1\]: empty image"),
        (_with(image_request(png()), _output("LOGITS")), r"outputs\[0\].name: the one output is 'EMBEDDING', got 'LOGITS'"),
        (_with(image_request(png()), _output("EMBEDDING", classification=3)), "parameter 'classification' is not supported"),
        (text_request("a", "b", "c", "d"), "TEXT: give 1 to 3 entries, got 4"),
        (text_request("a", " "), r"TEXT\[1\]: must not be empty"),
        (text_request("a" * 11), r"TEXT\[0\]: 11 characters exceeds the limit of 10"),
        (_with(text_request("a", "b"), lambda r: r.inputs[0].contents.bytes_contents.__setitem__(1, b"\xff\xfe")), r"TEXT\[1\]: not UTF-8 \(invalid start byte at byte 0\)"),
    ],
)  # fmt: skip
def test_bad_requests_are_invalid_arguments_and_reach_no_encoder(
    store: LocalStore, request_: v2.ModelInferRequest, message: str
) -> None:
    encoder = FakeEncoder()
    response, code, details = call(inference_api(store, encoder), "ModelInfer", request_)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, details), details
    assert response == v2.ModelInferResponse()
    assert encoder.calls == []


def test_every_rpc_takes_the_token_when_auth_is_on(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERENCE_TEST_TOKENS", "secret")
    api = inference_api(store)
    auth: dict[str, Any] = {"enabled": True, "token_env": "INFERENCE_TEST_TOKENS"}
    for rpc, request in (("ServerLive", v2.ServerLiveRequest()), ("ModelInfer", text_request("a"))):
        assert call(api, rpc, request, **auth)[1] == grpc.StatusCode.UNAUTHENTICATED
        assert call(api, rpc, request, [("authorization", "Bearer secret")], **auth)[1] is None


def test_unpack_bytes_keeps_empty_elements() -> None:
    assert unpack_bytes("X", raw(b"", b"ab", b"")) == [b"", b"ab", b""]
    assert unpack_bytes("X", b"") == []


def test_tritonclient_over_a_real_grpc_server(store: LocalStore) -> None:
    """The generic transport's grpc.aio handler, built from the vendored descriptors, as tritonclient
    calls it: its rpc paths, its messages, its errors."""

    async def scenario() -> tuple[Any, ...]:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([grpc_handler(inference_api(store), TokenAuth(AuthSettings()))])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        client = triton_aio.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            texts = triton.InferInput("TEXT", [2], "BYTES")
            texts.set_data_from_numpy(np.array([b"a", b"b"], dtype=np.object_))
            result = await client.infer("m-text", [texts], request_id="7")
            with pytest.raises(InferenceServerException) as unknown:
                await client.get_model_metadata("nope")
            return (
                await client.is_server_live(),
                await client.is_model_ready("m-image"),
                (await client.get_model_metadata("m-text")).outputs[0].shape,
                result.as_numpy("EMBEDDING"),
                result.get_response().id,
                unknown.value,
            )
        finally:
            await client.close()
            await server.stop(None)

    live, ready, shape, values, request_id, unknown = asyncio.run(scenario())
    assert live and ready and list(shape) == [-1, 4] and request_id == "7"
    np.testing.assert_array_equal(values, [[1] * 4, [2] * 4])
    assert unknown.status() == "StatusCode.NOT_FOUND" and "unknown model 'nope'" in unknown.message()
