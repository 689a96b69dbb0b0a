"""``cliplens index``: a data set to a served SAE in one command (see :mod:`cliplens.jobs.index`)."""

from __future__ import annotations

import argparse
import os

from cliplens.jobs.extract import ExtractConfig
from cliplens.jobs.extract_command import add_input_arguments
from cliplens.jobs.index import IndexJob, run_index
from cliplens.jobs.ray_cluster import ray_cluster
from cliplens.jobs.train_sae_command import add_sae_arguments, sae_settings
from cliplens.store.objects import open_store
from cliplens.store.topk_cache import REDIS_URL_ENV

HELP = "index a data set: extract, train an SAE, rank each latent's top inputs, fill the cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--sae-id", required=True, help="catalog id of the SAE, used to serve and query it")
    parser.add_argument("--site", default="final", help="final, resid:L or resid:L:patches (default: final)")
    parser.add_argument("--store", help="store URI (default: $CLIPLENS_STORE or ~/.cache/cliplens/store)")
    parser.add_argument(
        "--redis",
        default=os.environ.get(REDIS_URL_ENV),
        help="Redis URL to fill (default: $CLIPLENS_REDIS_URL; none: `cliplens serve` fills its own cache)",
    )
    parser.add_argument("--top-k", type=int, default=16, help="top inputs kept per latent (default: 16)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="retrain and re-rank even if the SAE id exists with other settings",
    )
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    add_sae_arguments(parser, epochs=20, batch_size=256, warmup_steps=20)


def run(args: argparse.Namespace) -> int:
    sae = sae_settings(args)
    job = IndexJob(
        extract=ExtractConfig(
            inputs=args.inputs,
            model=args.model,
            sites=(args.site,),
            input_format=args.input_format,
            labels_from=args.labels_from,
        ),
        sae_id=args.sae_id,
        arch=args.arch,
        d_sae=args.d_sae,
        expansion=args.expansion,
        fields=sae.fields,
        train=sae.train,
        batch_size=args.batch_size,
        buffer_rows=args.buffer_rows,
        top_k=args.top_k,
        redis_url=args.redis,
        force=args.force,
    )
    store = open_store(args.store)
    with ray_cluster(args.address):
        summary = run_index(job, store)
    for line in summary.lines():
        print(f"index: {line}")
    print(
        f"index: done; serve it with `cliplens serve{'' if args.store is None else ' --store ' + args.store}`"
    )
    return 0
