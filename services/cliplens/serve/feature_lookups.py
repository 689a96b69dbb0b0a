"""Feature-index lookups: Redis first, the store's durable index when Redis is down or cold.

Runs inside the ingress and the FeatureGateway (no extra Serve hop: on the latency budget of a Redis
lookup, every hop counts). A store answer carries the same numbers as a cached one; it is marked
``degraded``, never an error. A miss also starts a background refill of that SAE from the store
(one at a time per SAE, across replicas, through the cache's fill lock), so that after a Redis restart
answers come from the cache again without restarting anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from cliplens.serve.metrics import metrics
from cliplens.store import (
    AsyncTopKReader,
    LatentStats,
    ObjectStore,
    StoreUnavailableError,
    TopKCache,
    TopKEntry,
    TopKResult,
    TopKRow,
    fill_cache,
    read_latent_stats,
    read_topk_results,
)

_log = logging.getLogger(__name__)
# A fill lock outlives a crashed filler by at most this long.
FILL_LOCK_TTL_S = 300
# After a failed or skipped refill, misses wait this long before trying again.
REFILL_RETRY_S = 5.0


@dataclass(frozen=True)
class TopAnswer:
    entries: list[TopKEntry]
    from_redis: bool


@dataclass(frozen=True)
class StatsAnswer:
    stats: LatentStats
    from_redis: bool


@dataclass(frozen=True)
class _StoredIndex:
    rows: dict[int, list[TopKRow]]
    stats: list[LatentStats]

    def result(self, sae_id: str) -> TopKResult:
        return TopKResult(sae_id, [row for rows in self.rows.values() for row in rows], self.stats)


class FeatureLookups:
    """Top activating inputs and statistics of latents, for SAEs of one store."""

    def __init__(self, store: ObjectStore, redis_url: str, timeout_s: float) -> None:
        self.store = store
        self.redis_url = redis_url
        self.cache = AsyncTopKReader(redis_url, timeout_s=timeout_s)
        self._stored: dict[str, _StoredIndex] = {}
        self._refills: dict[str, asyncio.Task[None]] = {}
        self._next_refill: dict[str, float] = {}

    async def top(self, sae_id: str, run_id: str, latent: int, k: int) -> TopAnswer:
        entries = await self.cache.top(sae_id, latent, k)
        self._count("redis_topk", entries is not None)
        if entries is not None:
            return TopAnswer(entries, True)
        stored = await self._stored_index(sae_id, run_id)
        self._refill(sae_id, stored)
        rows = stored.rows.get(latent, [])[:k]
        return TopAnswer([TopKEntry(row.key, row.activation, row.label) for row in rows], False)

    async def stats(self, sae_id: str, run_id: str, latent: int) -> StatsAnswer:
        stats = await self.cache.stats(sae_id, latent)
        self._count("redis_stats", stats is not None)
        if stats is not None:
            return StatsAnswer(stats, True)
        stored = await self._stored_index(sae_id, run_id)
        self._refill(sae_id, stored)
        return StatsAnswer(stored.stats[latent], False)

    async def _stored_index(self, sae_id: str, run_id: str) -> _StoredIndex:
        """The SAE's durable index (top-k rows by latent, stats), read from the store once and kept."""
        if sae_id not in self._stored:
            rows, stats = await asyncio.gather(
                asyncio.to_thread(read_topk_results, self.store, run_id, sae_id),
                asyncio.to_thread(read_latent_stats, self.store, run_id, sae_id),
            )
            by_latent: dict[int, list[TopKRow]] = {}
            for row in rows:
                by_latent.setdefault(row.latent, []).append(row)
            self._stored[sae_id] = _StoredIndex(by_latent, stats)
        return self._stored[sae_id]

    def _refill(self, sae_id: str, stored: _StoredIndex) -> None:
        """Start loading the SAE into Redis in the background, unless a refill ran just now or runs."""
        running = self._refills.get(sae_id)
        if (running is not None and not running.done()) or time.monotonic() < self._next_refill.get(
            sae_id, 0
        ):
            return
        self._next_refill[sae_id] = time.monotonic() + REFILL_RETRY_S
        self._refills[sae_id] = asyncio.get_running_loop().create_task(
            asyncio.to_thread(self._refill_now, sae_id, stored)
        )

    def _refill_now(self, sae_id: str, stored: _StoredIndex) -> None:
        cache = TopKCache(self.redis_url)
        try:
            if cache.is_ready(sae_id) or not cache.claim_fill(sae_id, FILL_LOCK_TTL_S):
                return
            try:
                fill_cache(self.redis_url, [stored.result(sae_id)])
            finally:
                cache.release_fill(sae_id)
            _log.info("feature index of %s reloaded into Redis from the store", sae_id)
            metrics().cache_refills.inc(tags={"result": "filled"})
        except StoreUnavailableError as exc:
            _log.warning("feature index of %s not reloaded, Redis unavailable: %s", sae_id, exc)
            metrics().cache_refills.inc(tags={"result": "failed"})

    @staticmethod
    def _count(cache: str, hit: bool) -> None:
        metrics().cache_lookups.inc(tags={"cache": cache, "result": "hit" if hit else "miss"})
