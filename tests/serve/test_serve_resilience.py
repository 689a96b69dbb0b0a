"""Degraded answers when Redis is down, and client retries across a replica restart."""

from __future__ import annotations

import time

import pytest
import ray
from serve_setup import APP, ServeApp

from cliplens.demo.catalogue import FINAL_SAE
from cliplens_client import Client, LatentInfo, RetryPolicy


def numbers(info: LatentInfo) -> tuple[float, list[float], list[int], dict[str, int]]:
    return info.firing_rate, info.bin_edges.tolist(), info.counts.tolist(), info.label_counts


def wait_for_redis_answers(client: Client, latent: int, timeout_s: float = 60.0) -> str:
    """Ask until an answer comes from Redis again (the service refills a cold cache by itself)."""
    deadline = time.monotonic() + timeout_s
    source = ""
    while time.monotonic() < deadline:
        source = client.top_activations(FINAL_SAE, latent, k=8).source
        if source == "redis":
            break
        time.sleep(0.5)
    return source


@pytest.mark.parametrize("port", ["ingress", "feature port"])
def test_answers_fall_back_to_the_store_with_the_same_numbers_and_return_to_redis(
    serve_app: ServeApp, port: str
) -> None:
    address = serve_app.address if port == "ingress" else serve_app.feature_address
    latent = serve_app.index.active_latent
    with Client(address, app=APP, timeout=120) as client:
        from_redis = client.top_activations(FINAL_SAE, latent, k=8)
        info_redis = client.latent_info(FINAL_SAE, latent)
        serve_app.redis.stop()
        try:
            degraded = client.top_activations(FINAL_SAE, latent, k=8)
            info = client.latent_info(FINAL_SAE, latent)
        finally:
            serve_app.redis.start()  # empty: the service must refill it from the store
        source_after_restart = wait_for_redis_answers(client, latent)
        info_after_restart = client.latent_info(FINAL_SAE, latent)
        if source_after_restart != "redis":
            serve_app.index.fill_cache(serve_app.redis.url)  # keep the other tests' cache intact
    assert (from_redis.source, from_redis.degraded) == ("redis", False)
    assert (degraded.source, degraded.degraded) == ("store", True)
    assert [(i.input_id, i.label, i.activation) for i in degraded.inputs] == [
        (i.input_id, i.label, i.activation) for i in from_redis.inputs
    ]
    assert degraded.inputs and (info.degraded, info.source) == (True, "store")
    assert (info_redis.degraded, info_redis.source) == (False, "redis")
    assert info_redis.firing_rate > 0 and info_redis.label_counts
    assert numbers(info) == numbers(info_redis)
    assert source_after_restart == "redis"
    assert info_after_restart.source == "redis" and numbers(info_after_restart) == numbers(info_redis)


def encoder_replicas() -> list[dict[str, str]]:
    """The named actors of the demo app's Encoder replicas (not the auth app's)."""
    return [a for a in ray.util.list_named_actors(all_namespaces=True) if f"{APP}#Encoder#" in a["name"]]


def test_client_retries_through_a_killed_replica(serve_app: ServeApp) -> None:
    from ray import serve

    status = serve.status().applications[APP].deployments["Encoder"]
    assert status.status.value == "HEALTHY"
    actors = encoder_replicas()
    assert len(actors) == 1
    ray.kill(ray.get_actor(actors[0]["name"], namespace=actors[0]["namespace"]), no_restart=True)
    retry = RetryPolicy(max_attempts=40, initial_backoff=0.2, max_backoff=2.0)
    with serve_app.client(retry=retry) as c:
        result = c.embed_texts("demo", ["a photo of a cat"])
    assert result.vectors.shape == (1, 128)
    new_actors = encoder_replicas()
    assert new_actors and new_actors != actors
