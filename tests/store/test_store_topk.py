"""The Redis top-k cache against brute force, its rebuild from the durable parquet, and misses."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import redis
import torch

from cliplens.core.errors import InvalidInputError
from cliplens.store import (
    AsyncTopKReader,
    LatentStats,
    LocalStore,
    StoreUnavailableError,
    TopKCache,
    TopKEntry,
    TopKRow,
    read_topk_results,
    write_topk_results,
)
from cliplens.store.local_stack import RedisServer

K, D_SAE, ROWS = 5, 12, 90
KEYS = [f"img_{i:03d}" for i in range(ROWS)]
LABELS = [str(i % 10) for i in range(ROWS)]


def activations() -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(ROWS, D_SAE, generator=generator).relu()
    z[:, -1] = 0  # a latent that never fires
    z[:, 0] = 0  # a latent firing on fewer than K inputs
    z[0, 0], z[1, 0] = 2.0, 1.0
    return z


def brute_force(z: torch.Tensor) -> dict[int, list[TopKEntry]]:
    return {
        latent: sorted(
            (TopKEntry(KEYS[r], float(z[r, latent]), LABELS[r]) for r in range(ROWS) if z[r, latent] > 0),
            key=lambda e: -e.activation,
        )[:K]
        for latent in range(D_SAE)
    }


def fill(cache: TopKCache, sae_id: str, z: torch.Tensor) -> None:
    for start in range(0, ROWS, 16):  # batches, as an extraction job sends them
        cache.update(sae_id, KEYS[start : start + 16], z[start : start + 16], LABELS[start : start + 16])
    cache.mark_ready(sae_id, D_SAE)


def cached(cache: TopKCache, sae_id: str) -> dict[int, list[TopKEntry] | None]:
    return {latent: cache.top(sae_id, latent) for latent in range(D_SAE)}


def approx(
    entries: Mapping[int, Sequence[TopKEntry] | None],
) -> dict[int, list[tuple[str, float, str | None]]]:
    return {
        latent: [(e.key, round(e.activation, 5), e.label) for e in found or []]
        for latent, found in entries.items()
    }


def test_topk_equals_brute_force_and_survives_flush_and_rebuild(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    cache = TopKCache(redis_server.url, k=K)
    z = activations()
    fill(cache, "sae-a", z)
    expected = brute_force(z)
    assert approx(cached(cache, "sae-a")) == approx(expected)
    assert len(expected[0]) == 2 and expected[D_SAE - 1] == []
    assert cache.top("sae-a", 3, n=2) == expected[3][:2]

    store = LocalStore(tmp_path)
    rows = [
        TopKRow(latent, rank, e.key, e.activation, e.label)
        for latent, entries in expected.items()
        for rank, e in enumerate(entries)
    ]
    write_topk_results(store, "run1", "sae-a", rows)
    assert read_topk_results(store, "run1", "sae-a") == [
        TopKRow(r.latent, r.rank, r.key, float(torch.tensor(r.activation).float()), r.label) for r in rows
    ]
    redis.Redis.from_url(redis_server.url).flushdb()
    assert cache.top("sae-a", 1) is None  # empty Redis: a miss, not an empty answer
    cache.rebuild("sae-a", read_topk_results(store, "run1", "sae-a"), D_SAE)
    assert approx(cached(cache, "sae-a")) == approx(expected)


def test_rebuild_replaces_stale_entries(redis_server: RedisServer) -> None:
    cache = TopKCache(redis_server.url, k=K)
    fill(cache, "sae-b", activations())
    cache.rebuild("sae-b", [TopKRow(2, 0, "only", 9.5, None)], D_SAE)
    assert cache.top("sae-b", 2) == [TopKEntry("only", 9.5, None)]
    assert cache.top("sae-b", 3) == []


def test_stats_round_trip(redis_server: RedisServer) -> None:
    cache = TopKCache(redis_server.url, k=K)
    stats = LatentStats(7, 90, [0.0, 0.5, 1.0], [5, 2], {"cat": 4, "dog": 3})
    cache.set_stats("sae-c", 4, stats)
    assert cache.stats("sae-c", 4) == stats
    assert cache.stats("sae-c", 5) is None


def test_async_reader_answers_like_the_cache(redis_server: RedisServer) -> None:
    cache = TopKCache(redis_server.url, k=K)
    reader = AsyncTopKReader(redis_server.url, k=K)
    fill(cache, "sae-e", activations())
    stats = LatentStats(3, 90, [0.0, 1.0], [3], {"cat": 3})
    cache.set_stats("sae-e", 2, stats)

    async def read() -> tuple[dict[int, list[TopKEntry] | None], list[TopKEntry] | None, list[object]]:
        tops = {latent: await reader.top("sae-e", latent) for latent in range(D_SAE)}
        miss = await reader.top("never-filled", 1)
        return tops, miss, [await reader.stats("sae-e", 2), await reader.stats("sae-e", 3)]

    tops, miss, found = asyncio.run(read())
    assert tops == cached(cache, "sae-e") and miss is None and found == [stats, None]


def test_reads_miss_without_raising_when_redis_is_down(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    cache = TopKCache(server.url, k=K, timeout_s=0.5)
    reader = AsyncTopKReader(server.url, k=K, timeout_s=0.5)
    fill(cache, "sae-d", activations())
    assert cache.top("sae-d", 1)

    async def across_a_restart() -> list[object]:
        before = await reader.top("sae-d", 1)
        server.stop()
        down = [cache.top("sae-d", 1), cache.stats("sae-d", 1)]
        down += [await reader.top("sae-d", 1), await reader.stats("sae-d", 1)]
        with pytest.raises(StoreUnavailableError, match="Redis cache unavailable"):
            cache.mark_ready("sae-d", D_SAE)
        server.start()
        fill(cache, "sae-d", activations())
        return [before, down, await reader.top("sae-d", 1)]

    try:
        before, down, after = asyncio.run(across_a_restart())
    finally:
        server.stop()
    assert down == [None] * 4
    assert before and after == before  # the pooled connection that outlived the restart is replaced


def test_bad_arguments_are_rejected(redis_server: RedisServer) -> None:
    with pytest.raises(InvalidInputError, match="Redis URL"):
        TopKCache("http://127.0.0.1:1")
    cache = TopKCache(redis_server.url, k=K)
    with pytest.raises(InvalidInputError, match="invalid SAE id"):
        cache.top("bad id*", 0)
    with pytest.raises(InvalidInputError, match=r"rows=2, d_sae"):
        cache.update("sae-e", ["a", "b"], torch.zeros(3, D_SAE))
