"""Degraded answers when Redis is down, and client retries across a replica restart."""

from __future__ import annotations

import pytest
import ray
from demo_index import FINAL_SAE
from serve_setup import APP, ServeApp

from cliplens_client import Client, RetryPolicy


@pytest.mark.parametrize("port", ["ingress", "feature port"])
def test_top_activations_fall_back_to_the_store_when_redis_is_down(serve_app: ServeApp, port: str) -> None:
    address = serve_app.address if port == "ingress" else serve_app.feature_address
    latent = serve_app.index.active_latent
    with Client(address, app=APP, timeout=120) as client:
        from_redis = client.top_activations(FINAL_SAE, latent, k=8)
        serve_app.redis.stop()
        try:
            degraded = client.top_activations(FINAL_SAE, latent, k=8)
            info = client.latent_info(FINAL_SAE, latent)
        finally:
            serve_app.redis.start()
            serve_app.index.fill_cache(serve_app.redis.url)
        assert (from_redis.source, from_redis.degraded) == ("redis", False)
        assert (degraded.source, degraded.degraded) == ("store", True)
        assert [(i.input_id, i.label) for i in degraded.inputs] == [
            (i.input_id, i.label) for i in from_redis.inputs
        ]
        assert degraded.inputs and info.degraded and info.source == "store"
        assert client.top_activations(FINAL_SAE, latent, k=8).source == "redis"


def test_client_retries_through_a_killed_replica(serve_app: ServeApp) -> None:
    from ray import serve

    status = serve.status().applications[APP].deployments["Encoder"]
    assert status.status.value == "HEALTHY"
    actors = [a for a in ray.util.list_named_actors(all_namespaces=True) if "Encoder" in a["name"]]
    assert len(actors) == 1
    ray.kill(ray.get_actor(actors[0]["name"], namespace=actors[0]["namespace"]), no_restart=True)
    retry = RetryPolicy(max_attempts=40, initial_backoff=0.2, max_backoff=2.0)
    with serve_app.client(retry=retry) as c:
        result = c.embed_texts("demo", ["a photo of a cat"])
    assert result.vectors.shape == (1, 128)
    new_actors = [a for a in ray.util.list_named_actors(all_namespaces=True) if "Encoder" in a["name"]]
    assert new_actors and new_actors != actors
