"""Feature-index lookups: Redis first, the store's durable top-k parquet when Redis is down or cold.

Runs inside the ingress (no extra Serve hop: on the latency budget of a Redis lookup, every hop
counts). A store answer is marked ``degraded``; it is never an error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cliplens.serve.metrics import metrics
from cliplens.store import (
    AsyncTopKReader,
    LatentStats,
    ObjectStore,
    TopKEntry,
    TopKRow,
    read_topk_results,
)


@dataclass(frozen=True)
class TopAnswer:
    entries: list[TopKEntry]
    from_redis: bool


@dataclass(frozen=True)
class StatsAnswer:
    stats: LatentStats | None
    from_redis: bool


class FeatureIndex:
    """Top activating inputs and statistics of latents, for SAEs of one store."""

    def __init__(self, store: ObjectStore, redis_url: str | None, timeout_s: float = 0.5) -> None:
        self.store = store
        self.cache = AsyncTopKReader(redis_url, timeout_s=timeout_s)
        self._store_rows: dict[str, dict[int, list[TopKRow]]] = {}

    async def top(self, sae_id: str, run_id: str, latent: int, k: int) -> TopAnswer:
        entries = await self.cache.top(sae_id, latent, k)
        self._count("redis_topk", entries is not None)
        if entries is not None:
            return TopAnswer(entries, True)
        rows = (await self._rows(sae_id, run_id)).get(latent, [])[:k]
        return TopAnswer([TopKEntry(row.key, row.activation, row.label) for row in rows], False)

    async def stats(self, sae_id: str, latent: int) -> StatsAnswer:
        stats = await self.cache.stats(sae_id, latent)
        self._count("redis_stats", stats is not None)
        return StatsAnswer(stats, stats is not None)

    async def _rows(self, sae_id: str, run_id: str) -> dict[int, list[TopKRow]]:
        """The SAE's durable top-k rows by latent, read from the store once and kept."""
        if sae_id not in self._store_rows:
            rows = await asyncio.to_thread(read_topk_results, self.store, run_id, sae_id)
            by_latent: dict[int, list[TopKRow]] = {}
            for row in rows:
                by_latent.setdefault(row.latent, []).append(row)
            self._store_rows[sae_id] = by_latent
        return self._store_rows[sae_id]

    @staticmethod
    def _count(cache: str, hit: bool) -> None:
        metrics().cache_lookups.inc(tags={"cache": cache, "result": "hit" if hit else "miss"})
