"""The generated transports and the call frame, without Ray: every rpc has an API method, the ingress
methods and a real grpc.aio direct port answer through one frame (auth, status codes, deadlines), and
a direct port's concurrency bound refuses the call beyond it (held on a gate, not timed)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from fakes import FINAL, FakeAttributor, Gate, catalog, settings
from grpc_health.v1 import health_pb2, health_pb2_grpc
from images import image

from cliplens.serve.attribution_api import AttributionApi
from cliplens.serve.auth import TokenAuth
from cliplens.serve.batching import in_time, raise_if_failed
from cliplens.serve.direct_port import DirectPortHost
from cliplens.serve.ingress import APIS, CliplensIngress
from cliplens.serve.request_checks import RequestImages
from cliplens.serve.rpc_frame import TIMEOUT_METADATA, call_deadline
from cliplens.serve.settings import AuthSettings, DirectPortSettings
from cliplens.serve.status import DeadlineExceededError
from cliplens.serve.transports import snake_case
from cliplens.store import LocalStore
from cliplens.store.local_stack import free_ports
from cliplens_client.v1 import attribution_pb2, attribution_pb2_grpc

TOKEN = "a-token"


def test_every_rpc_has_an_api_method_and_an_ingress_method() -> None:
    ingress = CliplensIngress.func_or_class
    for api in APIS:
        for method in api.service.methods:
            assert callable(getattr(api, snake_case(method.name), None)), (
                f"{api.__name__} lacks {method.name}"
            )
            generated = getattr(ingress, method.name)
            assert list(inspect.signature(generated).parameters) == ["self", "request", "grpc_context"]


@dataclass
class FakeContext:
    """What Serve's gRPC context offers the frame."""

    metadata: list[tuple[str, str]] = field(default_factory=list)
    code: grpc.StatusCode | None = None
    details: str = ""

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


def ingress_with(store: LocalStore, backend: FakeAttributor, auth: bool = False) -> Any:
    """An ingress object without Serve: the generated methods over an AttributionApi."""
    app = settings(store)
    ingress = object.__new__(CliplensIngress.func_or_class)
    api = AttributionApi(app, catalog(store), RequestImages(app.limits, None), backend)
    ingress.apis = {api.service.full_name: api}
    ingress.auth = (
        TokenAuth(AuthSettings(enabled=True, token_env=None, token_file=None))
        if auth
        else TokenAuth(AuthSettings())
    )
    return ingress


def test_ingress_method_maps_errors_to_status_codes(store: LocalStore) -> None:
    backend = FakeAttributor()
    ingress = ingress_with(store, backend)
    good = attribution_pb2.AttributeLatentsRequest(sae_id=FINAL, image=image(), texts=["a"], top_n=2)
    context = FakeContext()
    response = asyncio.run(ingress.AttributeLatents(good, context))
    assert context.code is None and [t.text for t in response.texts] == ["a"]
    bad, context = (
        attribution_pb2.AttributeLatentsRequest(sae_id="nope", image=image(), texts=["a"]),
        FakeContext(),
    )
    assert asyncio.run(ingress.AttributeLatents(bad, context)) == attribution_pb2.AttributeLatentsResponse()
    assert (context.code, context.details.startswith("sae_id: unknown SAE 'nope'")) == (
        grpc.StatusCode.NOT_FOUND,
        True,
    )


def test_a_call_whose_deadline_passed_is_answered_without_work(store: LocalStore) -> None:
    backend = FakeAttributor()
    request = attribution_pb2.AttributeLatentsRequest(sae_id=FINAL, image=image(), texts=["a"])
    context = FakeContext(metadata=[(TIMEOUT_METADATA, "0")])
    asyncio.run(ingress_with(store, backend).AttributeLatents(request, context))
    assert context.code == grpc.StatusCode.DEADLINE_EXCEEDED and backend.calls == []


def test_call_deadline_from_metadata() -> None:
    before = time.time()
    deadline = call_deadline(FakeContext(metadata=[(TIMEOUT_METADATA, "2500")]))
    assert deadline is not None and before + 2.5 <= deadline <= time.time() + 2.5
    assert call_deadline(FakeContext()) is None
    assert call_deadline(FakeContext(metadata=[(TIMEOUT_METADATA, "soon")])) is None


def test_batch_items_past_their_deadline_get_the_error_and_are_not_computed() -> None:
    now = time.time()
    items = [now + 60, now - 1, None, now - 60]
    out, live = in_time("attribute_latents", items, lambda deadline: deadline)
    assert live == [0, 2]
    assert [type(x).__name__ for x in out] == [
        "NoneType",
        "DeadlineExceededError",
        "NoneType",
        "DeadlineExceededError",
    ]
    with pytest.raises(DeadlineExceededError, match="deadline exceeded before attribute_latents ran"):
        raise_if_failed(out[1])
    assert raise_if_failed(5) == 5


@pytest.fixture
def served(store: LocalStore) -> Any:
    """A real grpc.aio direct port (auth on, two calls at once) over a gated fake Attributor."""

    @dataclass
    class Port:
        address: str
        backend: FakeAttributor

    async def start() -> AsyncIterator[Port]:
        backend = FakeAttributor(gate=Gate())
        app = settings(store)
        api = AttributionApi(app, catalog(store), RequestImages(app.limits, None), backend)
        port = DirectPortSettings(host="127.0.0.1", port=free_ports(1)[0], max_concurrent_rpcs=2)
        auth = TokenAuth(AuthSettings(enabled=True, token_file=None, token_env="CLIPLENS_TEST_TOKENS"))
        host = await DirectPortHost.start([api], auth, port)
        try:
            yield Port(f"127.0.0.1:{port.port}", backend)
        finally:
            await host.server.stop(None)

    return start


def test_direct_port_serves_the_api_with_auth_health_and_a_concurrency_bound(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPLENS_TEST_TOKENS", TOKEN)
    request = attribution_pb2.AttributeLatentsRequest(sae_id=FINAL, image=image(), texts=["a"], top_n=2)
    metadata = (("authorization", f"Bearer {TOKEN}"),)

    async def scenario() -> dict[str, Any]:
        outcomes: dict[str, Any] = {}
        async for port in served():
            async with grpc.aio.insecure_channel(port.address) as channel:
                stub = attribution_pb2_grpc.AttributionServiceStub(channel)
                health = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="")
                )
                outcomes["health"] = health.status
                with pytest.raises(grpc.aio.AioRpcError) as no_token:
                    await stub.AttributeLatents(request)
                outcomes["no token"] = no_token.value.code()
                held = [
                    asyncio.ensure_future(stub.AttributeLatents(request, metadata=metadata)) for _ in range(2)
                ]
                await port.backend.gate.until_arrived(2)  # type: ignore[union-attr]
                with pytest.raises(grpc.aio.AioRpcError) as beyond:
                    await stub.AttributeLatents(request, metadata=metadata)
                outcomes["beyond the bound"] = beyond.value.code()
                port.backend.gate.open()  # type: ignore[union-attr]
                outcomes["held"] = [[t.text for t in (await call).texts] for call in held]
        return outcomes

    outcomes = asyncio.run(scenario())
    assert outcomes == {
        "health": health_pb2.HealthCheckResponse.SERVING,
        "no token": grpc.StatusCode.UNAUTHENTICATED,
        "beyond the bound": grpc.StatusCode.RESOURCE_EXHAUSTED,
        "held": [["a"], ["a"]],
    }
