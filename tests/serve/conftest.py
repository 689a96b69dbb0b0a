"""One Serve instance for the serve tests, both apps started the way `cliplens serve` starts one: the
demo app ("cliplens", with its direct feature and attribution ports), and an auth-on app
("cliplens-auth": an ingress that takes one call and queues one, a feature port, and an Attributor
whose direct port speaks TLS and takes one call at a time)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from certificates import self_signed
from imported_saes import import_peer_saes
from serve_setup import AUTH_APP, TEST_OPTIONS, TOKEN, ServeApp

from cliplens.core.models import LoadedClip
from cliplens.demo.catalogue import build_demo_index
from cliplens.serve.local_app import ServePorts, start_app
from cliplens.serve.settings import AppSettings
from cliplens.store.local_stack import RedisServer, free_ports
from cliplens_client import Client


@pytest.fixture(scope="session")
def serve_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The app's own Redis: tests stop and restart it without touching the store tests' one."""
    with RedisServer(tmp_path_factory.mktemp("serve-redis")) as server:
        yield server


@pytest.fixture(scope="session")
def serve_app(
    ray_session: None,
    demo_clip: LoadedClip,
    serve_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServeApp]:
    from ray import serve

    root = tmp_path_factory.mktemp("serve")
    index = build_demo_index(demo_clip, root, serve_redis.url)
    import_peer_saes(index.store_dir)
    token_file = root / "tokens"
    token_file.write_text(f"# test tokens\n{TOKEN}\n")
    certificate = self_signed(root)
    grpc_port, http_port, feature_port, auth_feature_port, attribution_port, auth_attribution_port = (
        free_ports(6)
    )
    settings = AppSettings(
        models=["demo"],
        store_uri=str(index.store_dir),
        image_store_uri=str(index.bucket_dir),
        redis_url=serve_redis.url,
        limits={
            "max_image_bytes": 200_000,
            "max_image_pixels": 512 * 512,
            "max_texts": 8,
            "max_text_chars": 200,
        },
        sae_cache={"memory_budget_mb": 64, "max_saes_per_replica": 1},
        feature_port={"host": "127.0.0.1", "port": feature_port},
        attribution_port={"host": "127.0.0.1", "port": attribution_port},
    )
    proxies = ServePorts(grpc=grpc_port, http=http_port)
    start_app(settings, TEST_OPTIONS, proxies)
    auth_settings = AppSettings.model_validate(
        {
            **settings.model_dump(),
            "auth": {"enabled": True, "token_file": str(token_file)},
            "feature_port": {"host": "127.0.0.1", "port": auth_feature_port},
            "attribution_port": {
                "host": "127.0.0.1",
                "port": auth_attribution_port,
                "max_concurrent_rpcs": 1,
                "tls_cert_file": str(certificate.cert_file),
                "tls_key_file": str(certificate.key_file),
            },
        }
    )
    # The auth app's ingress takes one call and queues one more: the bound the tests push against.
    bounded = {
        **TEST_OPTIONS,
        "CliplensIngress": {
            **TEST_OPTIONS["CliplensIngress"],
            "max_ongoing_requests": 1,
            "max_queued_requests": 1,
        },
    }
    start_app(auth_settings, bounded, proxies, name=AUTH_APP)
    try:
        yield ServeApp(
            f"127.0.0.1:{grpc_port}",
            http_port,
            index,
            serve_redis,
            settings,
            f"127.0.0.1:{feature_port}",
            f"127.0.0.1:{auth_feature_port}",
            f"127.0.0.1:{attribution_port}",
            f"127.0.0.1:{auth_attribution_port}",
            certificate.pem,
        )
    finally:
        serve.shutdown()


@pytest.fixture(scope="session")
def client(serve_app: ServeApp) -> Iterator[Client]:
    with serve_app.client() as c:
        yield c
