"""Prometheus metrics of the application, exported through Ray's metrics agent (scraped with Ray's).

Names get Ray's ``ray_`` prefix on export, e.g. ``ray_cliplens_request_latency_ms_bucket``. The
metric objects are created on first use inside a replica (:func:`metrics`), not at import.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import grpc
from ray.serve.metrics import Counter, Gauge, Histogram

LATENCY_BOUNDARIES_MS = [
    0.5,
    1.0,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    50.0,
    75.0,
    100.0,
    200.0,
    500.0,
    1e3,
    2e3,
    5e3,
    1e4,
]
BATCH_BOUNDARIES = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]
LOAD_BOUNDARIES_S = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0]


@dataclass(frozen=True)
class Metrics:
    request_latency_ms: Histogram
    batch_requests: Histogram
    batch_items: Histogram
    queue_depth: Gauge
    expired_requests: Counter
    cache_lookups: Counter
    cache_refills: Counter
    load_seconds: Histogram


@functools.cache
def metrics() -> Metrics:
    """The process's metric objects."""
    return Metrics(
        request_latency_ms=Histogram(
            "cliplens_request_latency_ms",
            description="Latency of API calls in the ingress, by rpc and status code.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("method", "status"),  # type: ignore[arg-type]  # Ray types it as a 1-tuple
        ),
        batch_requests=Histogram(
            "cliplens_batch_requests",
            description="Requests per dynamic batch, by operation.",
            boundaries=BATCH_BOUNDARIES,
            tag_keys=("operation",),
        ),
        batch_items=Histogram(
            "cliplens_batch_items",
            description="Images or texts per dynamic batch, by operation.",
            boundaries=BATCH_BOUNDARIES,
            tag_keys=("operation",),
        ),
        queue_depth=Gauge(
            "cliplens_queue_depth",
            description="Requests in a replica waiting for their batch to run, by operation.",
            tag_keys=("operation",),
        ),
        expired_requests=Counter(
            "cliplens_expired_requests_total",
            description="Requests dropped from a batch, not computed, because their caller's deadline had passed, by operation.",
            tag_keys=("operation",),
        ),
        cache_lookups=Counter(
            "cliplens_cache_lookups_total",
            description="Cache lookups by cache (redis_topk, redis_stats, text_embeddings) and result (hit, miss).",
            tag_keys=("cache", "result"),  # type: ignore[arg-type]
        ),
        cache_refills=Counter(
            "cliplens_cache_refills_total",
            description="Background reloads of an SAE's feature index from the store into a cold Redis, by result (filled, failed).",
            tag_keys=("result",),
        ),
        load_seconds=Histogram(
            "cliplens_model_load_seconds",
            description="Time to load a CLIP model or an SAE into a replica.",
            boundaries=LOAD_BOUNDARIES_S,
            tag_keys=("kind",),
        ),
    )


def observe_call(method: str, code: grpc.StatusCode, seconds: float) -> None:
    """Record one API call's latency under its rpc name and status code."""
    metrics().request_latency_ms.observe(seconds * 1000.0, tags={"method": method, "status": code.name})
