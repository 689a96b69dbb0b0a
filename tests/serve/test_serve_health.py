"""grpc.health.v1 through a real health stub, and server reflection through a reflection client."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from serve_setup import APP, ServeApp


def test_health_check_serving(serve_app: ServeApp) -> None:
    with grpc.insecure_channel(serve_app.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "cliplens.v1.EncoderService", "cliplens.v1.FeatureService"):
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=service), metadata=(("application", APP),)
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(
                health_pb2.HealthCheckRequest(service="nope.Service"), metadata=(("application", APP),)
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_watch_streams_the_status_and_stays_open(serve_app: ServeApp) -> None:
    with grpc.insecure_channel(serve_app.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service, expected in (
            ("cliplens.v1.AttributionService", health_pb2.HealthCheckResponse.SERVING),
            ("nope.Service", health_pb2.HealthCheckResponse.SERVICE_UNKNOWN),
        ):
            stream = stub.Watch(
                health_pb2.HealthCheckRequest(service=service), metadata=(("application", APP),), timeout=60
            )
            assert next(stream).status == expected
            time.sleep(0.5)
            assert stream.is_active()  # held open for later changes, not ended after one message
            stream.cancel()
            assert stream.code() == grpc.StatusCode.CANCELLED
        reply = stub.Check(health_pb2.HealthCheckRequest(), metadata=(("application", APP),))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_and_describes_the_services(serve_app: ServeApp) -> None:
    with grpc.insecure_channel(serve_app.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {
            "cliplens.v1.EncoderService",
            "cliplens.v1.SaeService",
            "cliplens.v1.AttributionService",
            "cliplens.v1.FeatureService",
            "cliplens.v1.ModelService",
            "grpc.health.v1.Health",
        } <= services
        described = database.FindFileContainingSymbol("cliplens.v1.FeatureService")
        assert described.name == "cliplens/v1/features.proto"
        assert [m.name for m in described.service[0].method] == [
            "TopActivations",
            "LatentInfo",
            "SearchLatents",
        ]
