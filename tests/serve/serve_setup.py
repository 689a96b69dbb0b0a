"""Names and types shared by the serve tests and their fixtures (tests/serve/conftest.py)."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from demo_index import FINAL_SAE, DemoIndex

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


def concurrent_attribution_outcomes(client: Client, jpeg: bytes, calls: int = 12) -> list[str]:
    """Status names ("ok" or the error code) of ``calls`` slow AttributeLatents calls made at once."""

    def attribute(_: int) -> str:
        try:
            client.attribute_latents(FINAL_SAE, jpeg, ["a cat", "a dog"], top_n=100)
            return "ok"
        except RpcError as error:
            return error.code.name

    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(attribute, range(calls)))


def image_path(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "image.jpg"
    path.write_bytes(data)
    return path
