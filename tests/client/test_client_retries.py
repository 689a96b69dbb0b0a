"""Retries, deadlines and metadata of Client and AsyncClient against a real local gRPC server."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from scripted_server import DEMO_MODEL, serve_scripted

from cliplens_client import (
    AsyncClient,
    Client,
    DeadlineExceededError,
    InvalidArgumentError,
    ModelInfo,
    RetryPolicy,
    UnavailableError,
)
from cliplens_client.connection import TIMEOUT_METADATA, call_metadata

FAST_RETRIES = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)


def list_models(kind: str, address: str, **options: Any) -> list[ModelInfo]:
    """``list_models`` through a fresh sync or async client."""
    options.setdefault("retry", FAST_RETRIES)
    if kind == "sync":
        with Client(address, **options) as client:
            return client.list_models()

    async def run() -> list[ModelInfo]:
        async with AsyncClient(address, **options) as client:
            return await client.list_models()

    return asyncio.run(run())


KINDS = pytest.mark.parametrize("kind", ["sync", "async"])


@KINDS
def test_unavailable_twice_then_success_is_retried(kind: str) -> None:
    with serve_scripted() as server:
        server.service.failures = [grpc.StatusCode.UNAVAILABLE] * 2
        models = list_models(kind, server.address)
        assert [model.id for model in models] == [DEMO_MODEL.id]
        assert server.service.calls == 3


@KINDS
def test_unavailable_beyond_max_attempts_raises(kind: str) -> None:
    with serve_scripted() as server:
        server.service.failures = [grpc.StatusCode.UNAVAILABLE] * 5
        with pytest.raises(UnavailableError, match="after 3 attempts") as info:
            list_models(kind, server.address)
        assert info.value.attempts == 3
        assert server.service.calls == 3


@KINDS
def test_invalid_argument_is_not_retried(kind: str) -> None:
    with serve_scripted() as server:
        server.service.failures = [grpc.StatusCode.INVALID_ARGUMENT]
        with pytest.raises(InvalidArgumentError, match="ListModels failed with INVALID_ARGUMENT") as info:
            list_models(kind, server.address)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert server.service.calls == 1


@KINDS
def test_deadline_surfaces_as_deadline_exceeded(kind: str) -> None:
    with serve_scripted() as server:
        server.service.hang = True
        with pytest.raises(DeadlineExceededError, match=r"within the 0\.3 s deadline"):
            list_models(kind, server.address, timeout=0.3)
        assert server.service.calls == 1


@KINDS
def test_token_and_application_reach_the_server(kind: str) -> None:
    with serve_scripted() as server:
        list_models(kind, server.address, token="s3cret-token", app="cliplens-staging")
        metadata = server.service.metadata[0]
        assert metadata["authorization"] == "Bearer s3cret-token"
        assert metadata["application"] == "cliplens-staging"


@pytest.mark.parametrize(
    ("remaining", "sent"), [(30.0, "30000"), (1.2349, "1234"), (0.0009, "0"), (0.0, "0"), (-0.5, "0")]
)
def test_time_left_is_sent_in_whole_milliseconds_rounded_down(remaining: float, sent: str) -> None:
    routing = (("application", "cliplens"),)
    assert call_metadata(routing, remaining) == (*routing, (TIMEOUT_METADATA, sent))


@KINDS
def test_retries_and_the_deadline_header_reach_the_server(kind: str) -> None:
    with serve_scripted() as server:
        server.service.failures = [grpc.StatusCode.UNAVAILABLE]
        list_models(kind, server.address, timeout=5)
        sent = [int(metadata[TIMEOUT_METADATA]) for metadata in server.service.metadata]
    assert len(sent) == 2 and all(0 < ms <= 5_000 for ms in sent)
    assert sent[1] <= sent[0]  # the retry sends what is left, after its backoff


def test_defaults_route_to_cliplens_without_authorization() -> None:
    with serve_scripted() as server:
        list_models("sync", server.address)
        metadata = server.service.metadata[0]
        assert metadata["application"] == "cliplens"
        assert "authorization" not in metadata


def test_one_channel_serves_many_calls() -> None:
    with serve_scripted() as server:
        with Client(server.address) as client:
            saes = client.list_saes("demo")
            models = client.list_models(timeout=5)
        assert [sae.id for sae in saes] == ["demo-topk"] and saes[0].metrics == pytest.approx({"r2": 0.9})
        assert models[0].patch_grid == 8


@KINDS
def test_dns_targets_resolve_and_spread_round_robin(kind: str) -> None:
    with serve_scripted() as server:
        target = f"dns:///{server.address}"
        assert [m.id for m in list_models(kind, target)] == [m.id for m in list_models(kind, server.address)]
    with Client(target) as client:
        assert ("grpc.lb_policy_name", "round_robin") in client.settings.channel_options
    with Client(server.address) as client:
        assert all(name != "grpc.lb_policy_name" for name, _ in client.settings.channel_options)
