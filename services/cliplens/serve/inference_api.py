"""GRPCInferenceService: the Open Inference Protocol v2 (KServe v2, Triton) for the encoders.

Every served model ``M`` is two protocol models: ``M-image`` (input ``IMAGE``: BYTES, encoded JPEG, PNG
or WebP images) and ``M-text`` (input ``TEXT``: BYTES, UTF-8 texts), each with one output,
``EMBEDDING``: FP32 ``[n, d]``. They answer as EmbedImages and EmbedTexts do: the same checks and
limits, the same Encoder, the same vectors. The request parameter ``normalize`` (bool) is EmbedImages'
flag. Attribution stays on the cliplens API: the protocol has no place for it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cliplens import __version__
from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.serve.actor_types import Floats
from cliplens.serve.backends import EncoderBackend
from cliplens.serve.catalog import Catalog
from cliplens.serve.request_checks import RequestImages, check_count, check_texts
from cliplens.serve.settings import AppSettings
from cliplens_client.v1 import common_pb2
from cliplens_client.v1 import grpc_predict_v2_pb2 as v2

SERVER_NAME = "cliplens"
VERSION = "1"  # the one version of every model
OUTPUT = "EMBEDDING"
BYTES, FP32 = "BYTES", "FP32"
# Tensor parameters of protocol extensions this server does not implement.
SHARED_MEMORY = "shared_memory_region"
CLASSIFICATION = "classification"


@dataclass(frozen=True)
class Modality:
    """One encoder of a model as a protocol model: the name's suffix and its input tensor."""

    suffix: str
    input: str


IMAGE = Modality("-image", "IMAGE")
TEXT = Modality("-text", "TEXT")
MODALITIES = (IMAGE, TEXT)


class InferenceApi:
    """The protocol's health, metadata and ModelInfer rpcs over the Encoder deployment."""

    service = v2.DESCRIPTOR.services_by_name["GRPCInferenceService"]

    def __init__(
        self, settings: AppSettings, catalog: Catalog, images: RequestImages, encoder: EncoderBackend
    ) -> None:
        self.limits, self.catalog, self.images, self.encoder = settings.limits, catalog, images, encoder
        self._widths: dict[str, int] | None = None

    async def server_live(self, request: v2.ServerLiveRequest) -> v2.ServerLiveResponse:
        return v2.ServerLiveResponse(live=True)

    async def server_ready(self, request: v2.ServerReadyRequest) -> v2.ServerReadyResponse:
        return v2.ServerReadyResponse(ready=True)

    async def server_metadata(self, request: v2.ServerMetadataRequest) -> v2.ServerMetadataResponse:
        return v2.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=[])

    async def model_ready(self, request: v2.ModelReadyRequest) -> v2.ModelReadyResponse:
        self.model(request.name, request.version)
        return v2.ModelReadyResponse(ready=True)

    async def model_metadata(self, request: v2.ModelMetadataRequest) -> v2.ModelMetadataResponse:
        model_id, modality = self.model(request.name, request.version)
        tensor = v2.ModelMetadataResponse.TensorMetadata
        return v2.ModelMetadataResponse(
            name=request.name,
            versions=[VERSION],
            platform=SERVER_NAME,
            inputs=[tensor(name=modality.input, datatype=BYTES, shape=[-1])],
            outputs=[tensor(name=OUTPUT, datatype=FP32, shape=[-1, await self.width(model_id)])],
        )

    async def model_infer(self, request: v2.ModelInferRequest) -> v2.ModelInferResponse:
        model_id, modality = self.model(request.model_name, request.model_version, "model_name")
        elements = self.input_elements(request, modality)
        check_outputs(request.outputs)
        normalize = bool_parameter(request.parameters, "normalize")
        values: Floats
        if modality is IMAGE:
            images = await self.images.fetch_all(IMAGE.input, [common_pb2.Image(data=e) for e in elements])
            values = await self.encoder.embed_images(model_id, images)
        else:
            texts = [utf8(f"{TEXT.input}[{i}]", element) for i, element in enumerate(elements)]
            texts = check_texts(TEXT.input, texts, self.limits.max_texts, self.limits.max_text_chars)
            values = await self.encoder.embed_texts(model_id, texts)
        if normalize:  # as EmbedImages and EmbedTexts normalise
            values = values / np.maximum(np.linalg.norm(values, axis=-1, keepdims=True), 1e-12)
        values = np.ascontiguousarray(values, dtype="<f4")
        return v2.ModelInferResponse(
            model_name=request.model_name,
            model_version=VERSION,
            id=request.id,
            outputs=[
                v2.ModelInferResponse.InferOutputTensor(name=OUTPUT, datatype=FP32, shape=list(values.shape))
            ],
            raw_output_contents=[values.tobytes()],
        )

    def model(self, name: str, version: str, field: str = "name") -> tuple[str, Modality]:
        """The served model and modality of protocol model ``name``; NOT_FOUND naming the served ones."""
        for modality in MODALITIES:
            model_id = name.removesuffix(modality.suffix)
            if name.endswith(modality.suffix) and model_id in self.catalog.model_ids:
                if version not in ("", VERSION):
                    raise NotFoundError(f"{field}: model '{name}' has no version '{version}'; it has '1'")
                return model_id, modality
        served = ", ".join(f"{m}{modality.suffix}" for m in self.catalog.model_ids for modality in MODALITIES)
        raise NotFoundError(f"{field}: unknown model '{name}'; served: {served}")

    async def width(self, model_id: str) -> int:
        """The embedding width of ``model_id`` (the Encoder's facts, asked once)."""
        if self._widths is None:
            self._widths = {facts.model_id: facts.embed_dim for facts in await self.encoder.facts()}
        return self._widths[model_id]

    def input_elements(self, request: v2.ModelInferRequest, modality: Modality) -> list[bytes]:
        """The elements of the request's one input, from its typed or its raw contents, checked
        against the input's name, datatype and shape and the count limit."""
        name = request.model_name
        if len(request.inputs) != 1:
            raise InvalidInputError(
                f"inputs: model '{name}' takes one input, {modality.input}; got {len(request.inputs)}"
            )
        tensor = request.inputs[0]
        if tensor.name != modality.input:
            raise InvalidInputError(
                f"inputs[0].name: model '{name}' takes input '{modality.input}', got '{tensor.name}'"
            )
        field = modality.input
        if tensor.datatype != BYTES:
            raise InvalidInputError(f"{field}.datatype: must be {BYTES}, got '{tensor.datatype}'")
        if SHARED_MEMORY in tensor.parameters:
            raise InvalidInputError(f"{field}: shared memory is not supported; send the contents")
        if len(tensor.shape) != 1 or tensor.shape[0] < 0:
            raise InvalidInputError(f"{field}.shape: must be [n], got {list(tensor.shape)}")
        count = tensor.shape[0]
        limit = self.limits.max_images if modality is IMAGE else self.limits.max_texts
        check_count(field, count, limit)
        typed = [f.name for f, _ in tensor.contents.ListFields()]
        if request.raw_input_contents:
            if typed:
                raise InvalidInputError(f"{field}: give raw_input_contents or contents, not both")
            if len(request.raw_input_contents) != 1:
                raise InvalidInputError(
                    f"raw_input_contents: one entry per input (1), got {len(request.raw_input_contents)}"
                )
            elements = unpack_bytes(field, request.raw_input_contents[0])
        else:
            if set(typed) - {"bytes_contents"}:
                raise InvalidInputError(f"{field}.contents: a {BYTES} tensor's elements go in bytes_contents")
            elements = list(tensor.contents.bytes_contents)
        if len(elements) != count:
            raise InvalidInputError(f"{field}: shape [{count}] but {len(elements)} elements")
        return elements


def unpack_bytes(field: str, raw: bytes) -> list[bytes]:
    """The elements of a raw BYTES tensor: each a 4-byte little-endian length, then that many bytes."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInputError(f"{field}: raw contents end inside the length of element {len(elements)}")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise InvalidInputError(
                f"{field}: element {len(elements)} is {size} bytes long but {len(raw) - offset} remain"
            )
        elements.append(raw[offset : offset + size])
        offset += size
    return elements


def utf8(field: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{field}: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def check_outputs(outputs: Sequence[v2.ModelInferRequest.InferRequestedOutputTensor]) -> None:
    """Requested outputs, when given, are the one output (classification and shared memory are not)."""
    for i, output in enumerate(outputs):
        if output.name != OUTPUT:
            raise InvalidInputError(f"outputs[{i}].name: the one output is '{OUTPUT}', got '{output.name}'")
        for unsupported in (CLASSIFICATION, SHARED_MEMORY):
            if unsupported in output.parameters:
                raise InvalidInputError(f"outputs[{i}]: parameter '{unsupported}' is not supported")


def bool_parameter(parameters: Mapping[str, v2.InferParameter], name: str) -> bool:
    """A bool request parameter (false when absent)."""
    if name not in parameters:
        return False
    parameter = parameters[name]
    if parameter.WhichOneof("parameter_choice") != "bool_param":
        raise InvalidInputError(f"parameters.{name}: must be a bool")
    return parameter.bool_param
