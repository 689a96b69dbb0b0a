"""``cliplens extract``: images -> activation runs in an object store, on Ray Data (see :mod:`cliplens.jobs.extract`)."""

from __future__ import annotations

import argparse

from cliplens.jobs.extract import ExtractConfig, run_extract
from cliplens.jobs.ray_cluster import ray_cluster
from cliplens.store.decoding import DEFAULT_MAX_PIXELS
from cliplens.store.input_shards import DEFAULT_SHARD_ROWS, FORMATS
from cliplens.store.objects import open_store

HELP = "extract activations of images (parquet, WebDataset, image folder; local or s3://) into runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument(
        "--site",
        dest="sites",
        action="append",
        help="final, resid:L or resid:L:patches; repeat for several (one run each, one forward); default final",
    )
    parser.add_argument(
        "--store", help="output store URI (default: $CLIPLENS_STORE or ~/.cache/cliplens/store)"
    )
    parser.add_argument("--dataset-id", help="dataset name recorded in the run id (default: the inputs URI)")
    parser.add_argument(
        "--rows-per-shard",
        type=int,
        default=1024,
        help="inputs per output shard (part of an input shard; one pipeline block; default: 1024)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per encoder batch (default: 64)")
    parser.add_argument(
        "--input-shard-rows",
        type=int,
        default=DEFAULT_SHARD_ROWS,
        help="inputs per input shard of an image folder or a large parquet file (whole row groups; "
        f"default: {DEFAULT_SHARD_ROWS:,}); a tar is one input shard",
    )
    parser.add_argument(
        "--decode-batch-size",
        type=int,
        default=256,
        help="images a read task reads and decodes at a time (bounds the undecoded bytes it holds)",
    )
    parser.add_argument(
        "--decoders",
        type=int,
        help="concurrent read + decode tasks, one input shard each (default: one per encoder on CPU, "
        "as many as fit with GPU encoders)",
    )
    parser.add_argument("--encoders", type=int, default=1, help="encoder actors (default: 1)")
    parser.add_argument(
        "--gpus-per-encoder",
        type=float,
        help="GPUs per encoder actor (default: 1 when the cluster has GPUs, else 0)",
    )
    parser.add_argument("--cpus-per-encoder", type=float, default=1.0, help="CPUs reserved per encoder actor")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch threads per CPU encoder (default: cores / encoders)",
    )
    parser.add_argument("--dtype", default="fp32", help="encoder dtype: fp32, fp16 or bf16 (stored as fp16)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="skip larger images")
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """The data set and the model that reads it (shared with ``cliplens index``)."""
    parser.add_argument(
        "inputs",
        help="image folder (class sub-folders name the labels), parquet file/folder or WebDataset .tar "
        "shard(s); a path or s3:// URI",
    )
    parser.add_argument(
        "--format", dest="input_format", choices=FORMATS, help="input format (default: by suffix)"
    )
    parser.add_argument(
        "--labels-from",
        help="class-names file (one per line, line i names class i) for index labels: a parquet label "
        "column or WebDataset .cls files",
    )
    parser.add_argument("--model", default="demo", help="model id or open_clip architecture (default: demo)")


def run(args: argparse.Namespace) -> int:
    config = ExtractConfig(
        inputs=args.inputs,
        model=args.model,
        sites=tuple(args.sites or ["final"]),
        input_format=args.input_format,
        labels_from=args.labels_from,
        dataset_id=args.dataset_id,
        rows_per_shard=args.rows_per_shard,
        batch_size=args.batch_size,
        input_shard_rows=args.input_shard_rows,
        decode_batch_size=args.decode_batch_size,
        decoders=args.decoders,
        encoders=args.encoders,
        gpus_per_encoder=args.gpus_per_encoder,
        cpus_per_encoder=args.cpus_per_encoder,
        torch_threads=args.torch_threads,
        dtype=args.dtype,
        max_pixels=args.max_pixels,
    )
    store = open_store(args.store)
    with ray_cluster(args.address):
        summary = run_extract(config, store)
    for line in summary.lines():
        print(f"extract: {line}")
    return 0
