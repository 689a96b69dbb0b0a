"""An SAE's feature index: each ranking's top-k rows and per-latent statistics, durable in the store
and loaded into the Redis cache from there.

A ranking is stored under the SAE id (inputs ranked by their activation, the maximum over patches
at patch sites) and, at patch sites, under ``<sae_id>.patch-mean`` (ranked by the mean over
patches). The store holds the durable copy (:mod:`cliplens.store.topk_results`,
:mod:`cliplens.store.latent_stats`); Redis (:mod:`cliplens.store.topk_cache`) only caches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cliplens.store.latent_stats import latent_stats_key, read_latent_stats, write_latent_stats
from cliplens.store.objects import ObjectStore
from cliplens.store.topk_cache import LatentStats, TopKCache
from cliplens.store.topk_results import TopKRow, read_topk_results, topk_results_key, write_topk_results

Pooling = Literal["max", "mean"]
PATCH_MEAN_SUFFIX = ".patch-mean"
# Inputs kept per latent when the rows do not say (an empty ranking).
DEFAULT_TOP_K = 16


@dataclass(frozen=True)
class TopKResult:
    """One ranking of an SAE's latents: its id in the store and cache, rows and per-latent stats."""

    result_id: str
    rows: list[TopKRow]
    stats: list[LatentStats]

    @property
    def k(self) -> int:
        """Inputs kept per latent: one more than the largest rank."""
        return max((row.rank for row in self.rows), default=DEFAULT_TOP_K - 1) + 1


def result_ids(sae_id: str, patches: bool) -> dict[Pooling, str]:
    """The ids the rankings are stored under: the SAE id (max pooling) and, at patch sites, the mean."""
    return {"max": sae_id, "mean": sae_id + PATCH_MEAN_SUFFIX} if patches else {"max": sae_id}


def save_results(store: ObjectStore, run_id: str, results: list[TopKResult]) -> None:
    """The durable copy: top-k parquet and latent-stats parquet per ranking (stats last: their
    presence marks a complete index)."""
    for result in results:
        write_topk_results(store, run_id, result.result_id, result.rows)
        write_latent_stats(store, run_id, result.result_id, result.stats)


def has_results(store: ObjectStore, run_id: str, sae_id: str, patches: bool) -> bool:
    """Whether every ranking of ``sae_id`` is complete in the store."""
    return all(
        store.exists(topk_results_key(run_id, result_id))
        and store.exists(latent_stats_key(run_id, result_id))
        for result_id in result_ids(sae_id, patches).values()
    )


def load_results(store: ObjectStore, run_id: str, sae_id: str, patches: bool) -> list[TopKResult]:
    """Read back what :func:`save_results` wrote for ``sae_id``."""
    return [
        TopKResult(
            result_id,
            read_topk_results(store, run_id, result_id),
            read_latent_stats(store, run_id, result_id),
        )
        for result_id in result_ids(sae_id, patches).values()
    ]


def fill_cache(redis_url: str | None, results: list[TopKResult]) -> None:
    """Replace the cached rankings with ``results``; raises :class:`StoreUnavailableError` if Redis is down."""
    for result in results:
        TopKCache(redis_url, k=result.k).rebuild(
            result.result_id, result.rows, len(result.stats), result.stats
        )
