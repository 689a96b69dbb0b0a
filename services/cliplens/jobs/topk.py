"""Top-k activating inputs and activation histograms of every SAE latent over its stored run.

Two passes over the run, shard by shard: the first keeps each latent's top ``k`` inputs (only
positive activations count; ties go to the earlier row) and its maximum; the second fills a
histogram of the positive activations on ``[0, max]`` and counts the firing inputs per label. At
patch sites an input's activation is its maximum over patches (the ranking stored under the SAE id)
or its mean over patches (stored under ``<sae_id>.patch-mean``). The shards run in this process or
as Ray tasks whose results merge in a tree (:mod:`cliplens.jobs.shard_map`); the per-shard work and
the merges are the same functions (:mod:`cliplens.jobs.topk_parts`), so both give identical results.
"""

from __future__ import annotations

from functools import partial

from cliplens.core.errors import InvalidInputError
from cliplens.core.sae import Sae
from cliplens.jobs.shard_map import LocalShards, RayShards, ShardMap
from cliplens.jobs.topk_parts import (
    check_rows,
    latent_stats,
    maxima,
    merge_stats,
    merge_tops,
    shard_stats,
    shard_top,
    topk_rows,
)
from cliplens.store.feature_index import TopKResult, result_ids
from cliplens.store.run_reader import ActivationRun


def compute_topk(
    run: ActivationRun, sae: Sae, sae_id: str, k: int, *, on_ray: bool = False
) -> list[TopKResult]:
    """Both passes over ``run`` for every pooling that applies to its site; ``on_ray``: one Ray task
    per shard (Ray must be initialised) instead of this process, with the same results."""
    if k < 1:
        raise InvalidInputError(f"top-k must be at least 1, got {k}")
    check_rows(run)
    poolings = result_ids(sae_id, patches=len(run.row_shape) == 2)
    shards: ShardMap = RayShards(run, sae) if on_ray else LocalShards(run, sae)
    top = shards.reduce(
        "topk pass 1/2", partial(shard_top, poolings=list(poolings), k=k), partial(merge_tops, k=k)
    )
    label_names = sorted(top.labels)
    peaks = maxima(top)
    stats = shards.reduce(
        "topk pass 2/2", partial(shard_stats, maxima=peaks, label_names=label_names), merge_stats
    )
    return [
        TopKResult(
            result_id,
            topk_rows(top, pooling),
            latent_stats(stats, pooling, peaks[pooling], label_names, run.num_rows),
        )
        for pooling, result_id in poolings.items()
    ]
