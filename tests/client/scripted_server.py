"""A real gRPC server on a free loopback port serving a scripted ModelService."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from cliplens_client.v1 import models_pb2, models_pb2_grpc

DEMO_MODEL = models_pb2.ModelInfo(
    id="demo", arch="cliplens-demo-cifar10", embed_dim=256, image_size=32, n_layers=4, patch_grid=8
)
DEMO_SAE = models_pb2.SaeInfo(
    id="demo-topk", model_id="demo", site="final", arch="topk", d_in=256, d_sae=2048, metrics={"r2": 0.9}
)


class ScriptedModelService(models_pb2_grpc.ModelServiceServicer):
    """Fails with the queued status codes first, then answers; records every call's metadata.

    With ``hang`` set, a call waits until the client gives up on it (its deadline passes).
    """

    def __init__(self) -> None:
        self.failures: list[grpc.StatusCode] = []
        self.hang = False
        self.metadata: list[dict[str, str]] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.metadata)

    def _enter(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.metadata.append({item.key: item.value for item in context.invocation_metadata()})
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            context.abort(failure, f"scripted {failure.name}")
        if self.hang:
            finished = threading.Event()
            context.add_callback(finished.set)
            finished.wait(timeout=60)

    def ListModels(self, request: models_pb2.ListModelsRequest, context: grpc.ServicerContext) -> Any:
        self._enter(context)
        return models_pb2.ListModelsResponse(models=[DEMO_MODEL])

    def ListSaes(self, request: models_pb2.ListSaesRequest, context: grpc.ServicerContext) -> Any:
        self._enter(context)
        return models_pb2.ListSaesResponse(saes=[DEMO_SAE] if request.model_id in ("", "demo") else [])


@dataclass
class ModelServer:
    address: str
    service: ScriptedModelService = field(repr=False)


@contextmanager
def serve_scripted() -> Iterator[ModelServer]:
    """Serve a fresh :class:`ScriptedModelService` until the block ends."""
    service = ScriptedModelService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    models_pb2_grpc.add_ModelServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield ModelServer(f"127.0.0.1:{port}", service)
    finally:
        server.stop(grace=None).wait()
