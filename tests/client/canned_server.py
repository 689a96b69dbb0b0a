"""A gRPC server answering every cliplens rpc with a fixed response and recording requests and metadata."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from cliplens_client import pack_array
from cliplens_client.v1 import attribution_pb2, common_pb2, encoder_pb2, features_pb2, models_pb2, sae_pb2

SERVICE_MODULES = (encoder_pb2, sae_pb2, attribution_pb2, features_pb2, models_pb2)
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
LABEL = common_pb2.LatentLabel(text="striped fur", alignment=0.31)
CODES = common_pb2.SparseLatents(
    d_sae=8, rows=[common_pb2.SparseRow(indices=[1, 5], values=[0.5, 2.0]), common_pb2.SparseRow()]
)

CANNED: dict[str, Message] = {
    "EmbedImages": encoder_pb2.EmbedImagesResponse(
        model_id="demo", embeddings=pack_array(np.arange(6).reshape(2, 3))
    ),
    "EmbedTexts": encoder_pb2.EmbedTextsResponse(
        model_id="demo", embeddings=pack_array(np.ones((1, 3)), "float16")
    ),
    "Encode": sae_pb2.EncodeResponse(sae_id="demo-topk", batch_shape=[2], latents=CODES),
    "Decode": sae_pb2.DecodeResponse(sae_id="demo-topk", activations=pack_array(np.ones((2, 3)))),
    "Reconstruct": sae_pb2.ReconstructResponse(
        sae_id="demo-topk",
        batch_shape=[2],
        reconstruction=pack_array(np.zeros((2, 3))),
        latents=CODES,
        error=sae_pb2.ReconstructionError(mse=0.25, nmse=0.1, explained_variance=0.9, row_nmse=[0.05, 0.15]),
    ),
    "AttributeLatents": attribution_pb2.AttributeLatentsResponse(
        sae_id="demo-topk",
        patch_grid=2,
        texts=[
            attribution_pb2.TextAttribution(
                text="a cat",
                score=0.28,
                error_attribution=0.02,
                error_share=0.125,
                latents=[
                    attribution_pb2.LatentAttribution(
                        latent=7,
                        activation=3.5,
                        attribution=0.07,
                        labels=[LABEL],
                        patch_map=pack_array(np.eye(2)),
                    )
                ],
            )
        ],
    ),
    "Decompose": attribution_pb2.DecomposeResponse(
        model_id="demo",
        score=0.28,
        embedding_contribution=0.01,
        layers=[attribution_pb2.LayerContribution(layer=0, attention=0.1, mlp=0.17, heads=[0.02, 0.08])],
        patch_heatmap=pack_array(np.full((2, 2), 0.5)),
    ),
    "Steer": attribution_pb2.SteerResponse(
        sae_id="demo-topk",
        original_embedding=pack_array(np.zeros(3)),
        steered_embedding=pack_array(np.ones(3)),
        classes=[attribution_pb2.ClassProbability(class_name="cat", before=0.25, after=0.75)],
    ),
    "DescribeHeads": attribution_pb2.DescribeHeadsResponse(
        model_id="demo",
        n_images=2000,
        cached=True,
        heads=[
            attribution_pb2.HeadDescription(
                layer=3,
                head=0,
                descriptions=[
                    attribution_pb2.HeadText(text="a photo of a cat", variance_explained=0.25),
                    attribution_pb2.HeadText(text="stripes", variance_explained=0.125),
                ],
                variance_explained=0.375,
                variance=2.5,
            ),
            attribution_pb2.HeadDescription(layer=3, head=1),  # no variance left to explain
        ],
    ),
    "RankHeads": attribution_pb2.RankHeadsResponse(
        model_id="demo",
        n_images=500,
        accuracy=0.875,
        class_names=["cat", "dog"],
        heads=[
            attribution_pb2.RankedHead(layer=3, head=1, accuracy=0.75, accuracy_drop=0.125),
            attribution_pb2.RankedHead(layer=0, head=2, accuracy=0.90625, accuracy_drop=-0.03125),
        ],
    ),
    "TopActivations": features_pb2.TopActivationsResponse(
        sae_id="demo-topk",
        latent=7,
        source=features_pb2.FEATURE_SOURCE_REDIS,
        inputs=[
            features_pb2.ActivatingInput(input_id="cifar10-test/00042", activation=4.5, label="cat", patch=3),
            features_pb2.ActivatingInput(input_id="cifar10-test/00007", activation=4.0, label="dog"),
        ],
    ),
    "LatentInfo": features_pb2.LatentInfoResponse(
        sae_id="demo-topk",
        latent=7,
        labels=[LABEL],
        alignment=0.31,
        clarity=0.6,
        firing_rate=0.02,
        histogram=features_pb2.Histogram(bin_edges=[0.0, 1.0, 2.0], counts=[10, 3]),
        source=features_pb2.FEATURE_SOURCE_STORE,
        degraded=True,
    ),
    "SearchLatents": features_pb2.SearchLatentsResponse(
        sae_id="demo-topk",
        matches=[features_pb2.LatentMatch(latent=7, alignment=0.4, labels=[LABEL])],
        source=features_pb2.FEATURE_SOURCE_STORE,
        degraded=True,
    ),
    "ListModels": models_pb2.ListModelsResponse(models=[models_pb2.ModelInfo(id="demo", arch="tiny")]),
    "ListSaes": models_pb2.ListSaesResponse(saes=[models_pb2.SaeInfo(id="demo-topk", model_id="demo")]),
}


@dataclass
class CannedServer:
    """``requests`` and ``metadata`` map an rpc's name to its last request and that call's metadata."""

    address: str
    requests: dict[str, Message] = field(default_factory=dict)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)


def _handlers(canned: CannedServer) -> list[grpc.GenericRpcHandler]:
    handlers = []
    for module in SERVICE_MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            methods = {}
            for method in service.methods:

                def answer(request: Message, context: Any, name: str = method.name) -> Message:
                    canned.requests[name] = request
                    canned.metadata[name] = {item.key: item.value for item in context.invocation_metadata()}
                    return CANNED[name]

                methods[method.name] = grpc.unary_unary_rpc_method_handler(
                    answer,
                    request_deserializer=GetMessageClass(method.input_type).FromString,
                    response_serializer=GetMessageClass(method.output_type).SerializeToString,
                )
            handlers.append(grpc.method_handlers_generic_handler(service.full_name, methods))
    return handlers


@contextmanager
def serve_canned() -> Iterator[CannedServer]:
    """Serve every rpc on a free loopback port, recording what each received last."""
    canned = CannedServer(address="")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=_handlers(canned))
    canned.address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    try:
        yield canned
    finally:
        server.stop(grace=None).wait()
