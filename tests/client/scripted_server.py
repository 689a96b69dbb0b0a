"""A real gRPC server on a free loopback port serving a scripted ModelService."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
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
    ``on_call``, when set, runs as each call arrives, before the call is answered (e.g. to move a
    test's fake clock between a client's attempts).
    """

    def __init__(self) -> None:
        self.failures: list[grpc.StatusCode] = []
        self.hang = False
        self.on_call: Callable[[], None] | None = None
        self.metadata: list[dict[str, str]] = []
        self._arrived = threading.Condition()

    @property
    def calls(self) -> int:
        return len(self.metadata)

    def wait_for_calls(self, count: int, timeout: float = 30.0) -> None:
        """Block until ``count`` calls have arrived in all (a gate, not a sleep)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: self.calls >= count, timeout):
                raise TimeoutError(f"{self.calls} calls arrived, expected {count}")

    def _enter(self, context: grpc.ServicerContext) -> None:
        with self._arrived:
            self.metadata.append({item.key: item.value for item in context.invocation_metadata()})
            failure = self.failures.pop(0) if self.failures else None
            self._arrived.notify_all()
        if self.on_call is not None:
            self.on_call()
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


class ModelServer:
    """A :class:`ScriptedModelService` on a loopback port; :meth:`stop` then :meth:`start` keeps the port."""

    def __init__(self, service: ScriptedModelService | None = None) -> None:
        self.service = service or ScriptedModelService()
        self.port = 0
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        models_pb2_grpc.add_ModelServiceServicer_to_server(self.service, server)
        port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        if not port or self.port not in (0, port):
            raise RuntimeError(f"could not bind 127.0.0.1:{self.port}")
        self.port = port
        server.start()
        self._server = server

    def stop(self) -> None:
        """Stop at once: calls in flight fail (UNAVAILABLE) and new connections are refused."""
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def __repr__(self) -> str:
        return f"ModelServer({self.address})"


@contextmanager
def serve_scripted() -> Iterator[ModelServer]:
    """Serve a fresh :class:`ScriptedModelService` until the block ends."""
    server = ModelServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def unused_address() -> str:
    """A loopback address that nothing listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"
