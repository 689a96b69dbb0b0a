"""Prometheus metrics as a scraper sees them: Ray's metrics export port after real gRPC calls."""

from __future__ import annotations

import time
import urllib.request

import pytest
from serve_setup import ServeApp

from cliplens.demo.catalogue import FINAL_SAE
from cliplens_client import Client
from cliplens_client.errors import NotFoundError

# Each wanted series: metric name and label fragments that must all be on one exported line.
WANTED = {
    "latency of a good call": (
        "ray_cliplens_request_latency_ms_count",
        ('method="ListModels"', 'status="OK"'),
    ),
    "latency of a failed call": (
        "ray_cliplens_request_latency_ms_count",
        ('method="EmbedTexts"', 'status="NOT_FOUND"'),
    ),
    "encoder batch sizes": ("ray_cliplens_batch_items_count", ('operation="embed_texts"',)),
    "queue depth": ("ray_cliplens_queue_depth", ('operation="embed_texts"',)),
    "cache hits": ("ray_cliplens_cache_lookups_total", ('cache="redis_topk"', 'result="hit"')),
    "model load time": ("ray_cliplens_model_load_seconds_count", ('kind="clip"',)),
}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def series_value(text: str, name: str, labels: tuple[str, ...]) -> float | None:
    """The summed value of ``name``'s exported lines carrying every label fragment, or None."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(label in line for label in labels)
    ]
    return sum(values) if values else None


def test_prometheus_exports_latency_batches_queue_cache_and_load(
    serve_app: ServeApp, client: Client, ray_metrics_port: int
) -> None:
    client.list_models()
    client.embed_texts("demo", ["a cat", "a ship"])
    client.top_activations(FINAL_SAE, serve_app.index.active_latent, k=3)
    with pytest.raises(NotFoundError):
        client.embed_texts("no-such-model", ["a cat"])
    deadline = time.monotonic() + 120  # Ray's agent exports every few seconds
    while True:
        text = scrape(ray_metrics_port)
        found = {what: series_value(text, *series) for what, series in WANTED.items()}
        if all(value is not None for value in found.values()) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert {what for what, value in found.items() if value is None} == set()
    assert found["latency of a good call"] is not None and found["latency of a good call"] >= 1
    assert found["encoder batch sizes"] is not None and found["encoder batch sizes"] >= 1
    assert found["cache hits"] is not None and found["cache hits"] >= 1
