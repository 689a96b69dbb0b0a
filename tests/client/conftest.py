"""Fixtures: real gRPC servers on free loopback ports (a scripted ModelService; canned answers for every rpc)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from canned_server import CannedServer, serve_canned
from scripted_server import ModelServer, ScriptedModelService

from cliplens_client.v1 import models_pb2_grpc


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    service = ScriptedModelService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    models_pb2_grpc.add_ModelServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield ModelServer(f"127.0.0.1:{port}", service)
    finally:
        server.stop(grace=None).wait()


@pytest.fixture
def canned_server() -> Iterator[CannedServer]:
    with serve_canned() as server:
        yield server
