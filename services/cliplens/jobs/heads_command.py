"""``cliplens heads``: describe the image encoder's attention heads (TextSpan) or rank them by the
zero-shot accuracy lost under mean ablation. Results are cached in the store, keyed by the model
and the inputs (see :mod:`cliplens.store.head_results`), and shared with the served rpcs."""

from __future__ import annotations

import argparse
from pathlib import Path

from cliplens.core.decomposition.heads import DEFAULT_PER_HEAD, HeadDescriptions, HeadRanking
from cliplens.core.decomposition.textspan import load_descriptions
from cliplens.core.errors import InvalidInputError
from cliplens.core.models import load_clip
from cliplens.store.head_results import DEFAULT_MAX_IMAGES, describe_heads_cached, rank_heads_cached
from cliplens.store.objects import ObjectStore, open_object, open_store
from cliplens.store.readers import read_class_names

HELP = "describe attention heads by texts (TextSpan) or rank them by mean ablation (cached in the store)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    modes = parser.add_subparsers(dest="mode", required=True, metavar="MODE")
    describe = modes.add_parser(
        "describe", help="each head's TextSpan descriptions over the shipped CIFAR-10 sample"
    )
    _common(describe, top_n=10, shown="heads shown, by variance (default: 10; 0: all)")
    describe.add_argument(
        "--pool", help="description pool, one text per line (default: the shipped 1,044 descriptions)"
    )
    describe.add_argument(
        "--per-head",
        type=int,
        default=DEFAULT_PER_HEAD,
        help=f"descriptions per head (default: {DEFAULT_PER_HEAD})",
    )
    describe.add_argument(
        "--layer", dest="layers", type=int, action="append", help="a layer to describe; repeat (default: all)"
    )
    rank = modes.add_parser(
        "rank", help="heads by the zero-shot accuracy lost when each alone is mean-ablated"
    )
    _common(rank, top_n=10, shown="heads shown, largest drop first (default: 10; 0: all)")
    rank.add_argument(
        "--dataset",
        help="labelled parquet (key, jpg, label): a local path, an s3:// URI or a key in --store "
        "(default: the shipped CIFAR-10 sample)",
    )
    rank.add_argument(
        "--labels-from",
        help="class names, one per line (line i names label i); default: the labels are names, or the "
        "CIFAR-10 names for the shipped sample",
    )


def _common(parser: argparse.ArgumentParser, top_n: int, shown: str) -> None:
    parser.add_argument("--model", default="demo", help="model id (default: demo)")
    parser.add_argument(
        "--max-images",
        type=int,
        default=DEFAULT_MAX_IMAGES,
        help=f"images used, the first decodable ones (default: {DEFAULT_MAX_IMAGES:,})",
    )
    parser.add_argument("--top-n", type=int, default=top_n, help=shown)
    parser.add_argument(
        "--store", help="store URI of the cache (default: $CLIPLENS_STORE or ~/.cache/cliplens/store)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")


def run(args: argparse.Namespace) -> int:
    if args.top_n < 0:
        raise InvalidInputError(f"--top-n must be 0 (all) or more, got {args.top_n}")
    store = open_store(args.store)
    if args.mode == "describe":
        pool = load_descriptions(args.pool) if args.pool else None
        clip = load_clip(args.model, device=args.device)
        described = describe_heads_cached(
            store,
            clip,
            pool=pool,
            per_head=args.per_head,
            layers=args.layers,
            max_images=args.max_images,
            batch_size=args.batch_size,
        )
        _print_origin(store, described.key, described.cached)
        print(format_descriptions(described.result, args.top_n))
        return 0
    names = read_class_names(args.labels_from) if args.labels_from else None
    data_store, dataset = _dataset(store, args.dataset)
    clip = load_clip(args.model, device=args.device)
    ranked = rank_heads_cached(
        store,
        clip,
        dataset=dataset,
        class_names=names,
        max_images=args.max_images,
        data_store=data_store,
        batch_size=args.batch_size,
    )
    _print_origin(store, ranked.key, ranked.cached)
    print(format_ranking(ranked.result, args.top_n))
    return 0


def format_descriptions(result: HeadDescriptions, top_n: int = 0) -> str:
    """A Markdown table of the heads by variance (the first ``top_n``; 0: all) and their descriptions."""
    heads = result.by_variance()
    shown = heads[:top_n] if top_n else heads
    lines = [
        f"## Heads of {result.model_id} described by TextSpan ({result.n_images:,} images, "
        f"{result.per_head} descriptions per head; {len(shown)} of {len(heads)} heads, by variance)",
        "",
        "| head | variance | explained | descriptions (share of the head's variance) |",
        "|---|---|---|---|",
    ]
    for h in shown:
        texts = "; ".join(f"{p.text} ({p.variance_explained:.1%})" for p in h.descriptions)
        lines.append(f"| L{h.layer}.H{h.head} | {h.variance:.3f} | {h.variance_explained:.1%} | {texts} |")
    return "\n".join(lines)


def format_ranking(result: HeadRanking, top_n: int = 0) -> str:
    """A Markdown table of the heads by accuracy drop under mean ablation (the first ``top_n``; 0: all)."""
    shown = result.top(top_n) if top_n else result.heads
    lines = [
        f"## Heads of {result.model_id} ranked by mean ablation ({result.n_images:,} images, "
        f"{len(result.class_names)} classes; zero-shot accuracy {result.accuracy:.2%}; "
        f"{len(shown)} of {len(result.heads)} heads)",
        "",
        "| rank | head | accuracy ablated | drop |",
        "|---|---|---|---|",
    ]
    for i, h in enumerate(shown, 1):
        lines.append(f"| {i} | L{h.layer}.H{h.head} | {h.accuracy:.2%} | {h.accuracy_drop:+.2%} |")
    return "\n".join(lines)


def _print_origin(store: ObjectStore, key: str, cached: bool) -> None:
    where = f"{store.uri.rstrip('/')}/{key}"
    print(f"heads: {'cached: read from' if cached else 'computed and stored at'} {where}\n")


def _dataset(store: ObjectStore, value: str | None) -> tuple[ObjectStore, str | None]:
    """Where ``--dataset`` lives: a local file or ``s3://`` URI, else a key in the cache's store."""
    if not value:
        return store, None
    if value.startswith("s3://") or Path(value).expanduser().is_file():
        data_store, key = open_object(value)
        return data_store, key
    if Path(value).expanduser().is_dir():
        raise InvalidInputError(f"--dataset {value} is a folder: give one parquet file")
    return store, value
