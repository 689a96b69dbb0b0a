"""A plain grpc.aio server answering grpc.health.v1 only, outside Ray: the latency floor of any Python
gRPC call on this machine, for ``serve_features.py``. Run: ``python bare_health_server.py PORT``."""

from __future__ import annotations

import asyncio
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


async def serve(port: int) -> None:
    server = grpc.aio.server()
    checker = health.aio.HealthServicer()
    await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
