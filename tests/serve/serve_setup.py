"""Names and types shared by the serve tests and their fixtures (tests/serve/conftest.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cliplens.demo.catalogue import DemoIndex
from cliplens.serve.settings import AppSettings
from cliplens.store.local_stack import RedisServer
from cliplens_client import Client, RetryPolicy, RpcError

APP = "cliplens"
AUTH_APP = "cliplens-auth"
TOKEN = "serve-test-token"
SMALL = {"num_cpus": 0.2, "num_gpus": 0}
TEST_OPTIONS = {
    "CliplensIngress": {"ray_actor_options": SMALL},
    "Encoder": {"ray_actor_options": SMALL},
    "SaeRunner": {"ray_actor_options": SMALL},
    "Attributor": {"ray_actor_options": SMALL},
    "FeatureGateway": {"ray_actor_options": SMALL},
}


@dataclass(frozen=True)
class ServeApp:
    address: str
    http_port: int
    index: DemoIndex
    redis: RedisServer
    settings: AppSettings
    feature_address: str  # the FeatureGateway's direct port
    auth_feature_address: str  # the auth-on app's direct feature port
    attribution_address: str  # the Attributor's direct port
    auth_attribution_address: str  # the auth-on app's Attributor's direct port (TLS, one call at a time)
    auth_attribution_root: bytes  # the PEM certificate that port presents (self-signed)

    def client(self, app: str = APP, token: str | None = None, retry: RetryPolicy | None = None) -> Client:
        return Client(self.address, app=app, token=token, timeout=120, retry=retry)


def same(a: Any, b: Any) -> bool:
    """Equality of client results, numpy arrays included."""
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, (list, tuple)):
        return isinstance(b, type(a)) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    return bool(a == b)


@contextlib.contextmanager
def held_by_a_watch(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> Iterator[None]:
    """A grpc.health.v1 Watch stream, open (its first answer has arrived, so a server slot holds it)
    until the block ends: a call that stays in progress without timing anything."""
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), metadata=metadata)
    first = next(stream)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    try:
        yield
    finally:
        stream.cancel()


def outcome(call: Callable[[], object]) -> str:
    """ "ok", or the status code's name of the gRPC error that ``call`` raised."""
    try:
        call()
        return "ok"
    except grpc.RpcError as error:
        return error.code().name  # type: ignore[no-any-return]
    except RpcError as error:
        return error.code.name


def eventually_ok(attempt: Callable[[], str], timeout_s: float = 30.0) -> str:
    """``attempt()`` until it says "ok" or ``timeout_s`` passes; its last outcome."""
    deadline = time.monotonic() + timeout_s
    while (result := attempt()) != "ok" and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def image_path(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "image.jpg"
    path.write_bytes(data)
    return path
