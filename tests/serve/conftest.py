"""One Serve instance for the serve tests: the demo app ("cliplens", with its direct feature and
attribution ports), and an auth-on app ("cliplens-auth": ingress with a small queue, feature port and
its own Attributor, whose direct port speaks TLS and takes one call at a time) sharing the encoder and
SAE runner."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from certificates import self_signed
from demo_index import build_demo_index
from serve_setup import APP, AUTH_APP, SMALL, TEST_OPTIONS, TOKEN, ServeApp

from cliplens.core.models import LoadedClip
from cliplens.serve.app import DEPLOYMENTS, GRPC_SERVICER_FUNCTIONS, compose
from cliplens.serve.settings import AppSettings
from cliplens.store.local_stack import RedisServer, free_ports
from cliplens_client import Client


@pytest.fixture(scope="session")
def serve_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The app's own Redis: tests stop and restart it without touching the store tests' one."""
    server = RedisServer(tmp_path_factory.mktemp("serve-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def serve_app(
    ray_session: None,
    demo_clip: LoadedClip,
    serve_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServeApp]:
    from ray import serve
    from ray.serve.config import gRPCOptions

    root = tmp_path_factory.mktemp("serve")
    index = build_demo_index(demo_clip, root, serve_redis.url)
    token_file = root / "tokens"
    token_file.write_text(f"# test tokens\n{TOKEN}\n")
    certificate = self_signed(root)
    grpc_port, http_port, feature_port, auth_feature_port, attribution_port, auth_attribution_port = (
        free_ports(6)
    )
    serve.start(
        http_options={"host": "127.0.0.1", "port": http_port},
        grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
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
    serve.run(compose(settings, TEST_OPTIONS), name=APP, route_prefix="/cliplens")
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
    handles = [serve.get_deployment_handle(name, app_name=APP) for name in ("Encoder", "SaeRunner")]
    auth_ingress = DEPLOYMENTS["CliplensIngress"].options(
        max_ongoing_requests=1, max_queued_requests=1, ray_actor_options=SMALL
    )
    auth_attributor = DEPLOYMENTS["Attributor"].options(ray_actor_options=SMALL).bind(auth_settings)
    auth_gateway = (
        DEPLOYMENTS["FeatureGateway"].options(ray_actor_options=SMALL).bind(auth_settings, auth_attributor)
    )
    serve.run(
        auth_ingress.bind(auth_settings, *handles, auth_attributor, [auth_gateway]),
        name=AUTH_APP,
        route_prefix="/cliplens-auth",
    )
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
