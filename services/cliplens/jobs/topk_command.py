"""``cliplens topk``: every latent's top-k inputs and activation histogram, into the store and Redis.

The run's shards are ranked by Ray tasks (a GPU each when the cluster has GPUs) whose results merge
in a tree; ``--address`` / ``$RAY_ADDRESS`` joins a cluster, else a local Ray starts.
"""

from __future__ import annotations

import argparse
import sys

from cliplens.jobs.ray_cluster import ray_cluster
from cliplens.jobs.topk import compute_topk
from cliplens.store.errors import StoreUnavailableError
from cliplens.store.feature_index import fill_cache, load_results, save_results
from cliplens.store.objects import open_store
from cliplens.store.run_reader import ActivationRun
from cliplens.store.saes import load_sae_from_store, read_sae_record

HELP = "compute each SAE latent's top-k inputs and histogram over its run (store + Redis cache)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="store URI (default: $CLIPLENS_STORE or the local store)")
    parser.add_argument(
        "--sae", required=True, help="SAE id in the store's catalog (trained on the run to rank)"
    )
    parser.add_argument("-k", type=int, default=16, help="inputs kept per latent (default: 16)")
    parser.add_argument(
        "--redis-url", help="Redis URL (default: $CLIPLENS_REDIS_URL or redis://127.0.0.1:6379/0)"
    )
    parser.add_argument(
        "--rebuild-cache", action="store_true", help="reload Redis from the stored results, computing nothing"
    )
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")


def run(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    record = read_sae_record(store, args.sae)
    run_ = ActivationRun(store, record.run_id)
    if args.rebuild_cache:
        results = load_results(store, run_.run_id, args.sae, patches=len(run_.row_shape) == 2)
    else:
        sae = load_sae_from_store(store, args.sae).sae
        with ray_cluster(args.address):
            results = compute_topk(run_, sae, args.sae, args.k, on_ray=True)
        save_results(store, run_.run_id, results)
        for result in results:
            live = sum(1 for s in result.stats if s.fires)
            print(
                f"topk: {result.result_id}: {len(result.rows):,} rows, {live}/{len(result.stats)} latents fire"
            )
        print(f"topk: stored under {store.uri.rstrip('/')}/runs/{run_.run_id}/topk/")
    try:
        fill_cache(args.redis_url, results)
    except StoreUnavailableError as exc:
        print(
            f"topk: warning: Redis is unavailable, the cache was not filled ({exc}); the results are in the "
            "store: run `cliplens topk --rebuild-cache` once Redis is back",
            file=sys.stderr,
        )
        return 0
    print(f"topk: loaded {', '.join(r.result_id for r in results)} into Redis")
    return 0
