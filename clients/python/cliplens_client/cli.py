"""``cliplens-client``: call the cliplens API from the shell and print plain-text tables.

Connection flags default to the environment: ``CLIPLENS_ADDRESS``, ``CLIPLENS_TOKEN``, ``CLIPLENS_APP``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cliplens_client.client import Client
from cliplens_client.connection import DEFAULT_ADDRESS, DEFAULT_APP, DEFAULT_TIMEOUT_S
from cliplens_client.errors import CliplensClientError, InvalidRequestError
from cliplens_client.inputs import ImageInput, ObjectKey
from cliplens_client.results import HeadText, LatentLabel
from cliplens_client.tables import format_table

HEADS_TIMEOUT_S = 600.0  # default deadline of `heads describe|rank`: a server-side cache miss takes minutes


def _images(args: argparse.Namespace) -> list[ImageInput]:
    return [*(Path(path) for path in args.image or ()), *(ObjectKey(key) for key in args.key or ())]


def _one_image(args: argparse.Namespace) -> ImageInput:
    return Path(args.image) if args.image else ObjectKey(args.key)


def _labels(labels: Sequence[LatentLabel], limit: int = 2) -> str:
    return "; ".join(f"{label.text} ({label.alignment:.2f})" for label in labels[:limit]) or "-"


def _top_head(heads: np.ndarray) -> tuple[int | None, float | None]:
    if not heads.size:
        return None, None
    top = int(np.argmax(np.abs(heads)))
    return top, float(heads[top])


def _descriptions(descriptions: Sequence[HeadText]) -> str:
    return "; ".join(f"{d.text} ({d.variance_explained:.2f})" for d in descriptions) or "-"


def _cached_line(cached: bool) -> str:
    return "cached: " + ("read from the store" if cached else "no, computed by this call and stored")


def _heads_timeout(args: argparse.Namespace) -> float:
    return HEADS_TIMEOUT_S if args.timeout is None else float(args.timeout)


def _source_line(source: str, degraded: bool) -> str:
    return f"source: {source}" + (" (degraded: may be incomplete or stale)" if degraded else "")


def embed(client: Client, args: argparse.Namespace) -> str:
    if args.text:
        names: list[str] = list(args.text)
        result = client.embed_texts(args.model, args.text, normalize=args.normalize)
    else:
        images = _images(args)
        if not images:
            raise InvalidRequestError("embed needs --image, --key or --text")
        names = [*(args.image or ()), *(args.key or ())]
        result = client.embed_images(args.model, images, normalize=args.normalize)
    vectors = result.vectors.astype(np.float32)
    rows = [
        (index, name, float(np.linalg.norm(vector)), " ".join(f"{v:+.3f}" for v in vector[:4]))
        for index, (name, vector) in enumerate(zip(names, vectors, strict=True))
    ]
    header = f"model {result.model_id}: {vectors.shape[0]} embeddings of width {vectors.shape[1]}"
    return header + "\n" + format_table(["#", "input", "norm", "first values"], rows)


def attribute(client: Client, args: argparse.Namespace) -> str:
    results = client.attribute_latents(args.sae, _one_image(args), args.text, top_n=args.top)
    blocks = []
    for text in results:
        rows = [
            (rank, item.latent, item.activation, item.attribution, _labels(item.labels))
            for rank, item in enumerate(text.latents, 1)
        ]
        title = f'text "{text.text}": score {text.score:.4f}, error share {text.error_share:.3f}'
        blocks.append(
            title + "\n" + format_table(["rank", "latent", "activation", "attribution", "labels"], rows)
        )
    return "\n\n".join(blocks)


def decompose(client: Client, args: argparse.Namespace) -> str:
    result = client.decompose(args.model, _one_image(args), args.text)
    rows = [(layer.layer, layer.attention, layer.mlp, *_top_head(layer.heads)) for layer in result.layers]
    parts = [
        f"model {result.model_id}: score {result.score:.4f}, embedding term {result.embedding_contribution:+.4f}",
        format_table(["layer", "attention", "mlp", "top head", "top head value"], rows),
    ]
    if result.patch_heatmap is not None and result.patch_heatmap.ndim == 2:
        grid = result.patch_heatmap
        parts.append(f"patch heatmap ({grid.shape[0]}x{grid.shape[1]}):")
        parts.extend(" ".join(f"{value:+.3f}" for value in row) for row in grid)
    return "\n".join(parts)


def topk(client: Client, args: argparse.Namespace) -> str:
    result = client.top_activations(args.sae, args.latent, k=args.k)
    rows = [
        (rank, item.input_id, item.activation, item.label or "-", item.patch)
        for rank, item in enumerate(result.inputs, 1)
    ]
    title = f"sae {result.sae_id}, latent {result.latent}; {_source_line(result.source, result.degraded)}"
    return title + "\n" + format_table(["rank", "input", "activation", "label", "patch"], rows)


def search(client: Client, args: argparse.Namespace) -> str:
    result = client.search_latents(args.sae, args.text, top_n=args.top)
    rows = [(rank, m.latent, m.alignment, _labels(m.labels)) for rank, m in enumerate(result.matches, 1)]
    title = f'sae {result.sae_id}, "{args.text}"; {_source_line(result.source, result.degraded)}'
    return title + "\n" + format_table(["rank", "latent", "alignment", "labels"], rows)


def describe_heads(client: Client, args: argparse.Namespace) -> str:
    result = client.describe_heads(
        args.model,
        pool=args.pool or (),
        per_head=args.per_head,
        layers=args.layer or (),
        timeout=_heads_timeout(args),
    )
    rows = [
        (h.layer, h.head, h.variance, h.variance_explained, _descriptions(h.descriptions))
        for h in result.heads
    ]
    title = (
        f"model {result.model_id}: {len(result.heads)} heads over {result.n_images} images; "
        + _cached_line(result.cached)
    )
    return title + "\n" + format_table(["layer", "head", "variance", "explained", "descriptions"], rows)


def rank_heads(client: Client, args: argparse.Namespace) -> str:
    result = client.rank_heads(
        args.model,
        dataset=args.dataset,
        class_names=args.class_name or (),
        max_images=args.max_images,
        top_n=args.top,
        timeout=_heads_timeout(args),
    )
    rows = [(rank, h.layer, h.head, h.accuracy, h.accuracy_drop) for rank, h in enumerate(result.heads, 1)]
    title = (
        f"model {result.model_id}: zero-shot accuracy {result.accuracy:.4f} on {result.n_images} images, "
        f"{len(result.class_names)} classes; {_cached_line(result.cached)}"
    )
    return title + "\n" + format_table(["rank", "layer", "head", "accuracy", "accuracy drop"], rows)


def models(client: Client, args: argparse.Namespace) -> str:
    model_rows = [(m.id, m.arch, m.embed_dim, m.image_size, m.n_layers) for m in client.list_models()]
    sae_rows = [(s.id, s.model_id, s.site, s.arch, s.d_in, s.d_sae) for s in client.list_saes(args.model)]
    return "\n\n".join(
        [
            format_table(["model", "arch", "embed dim", "image size", "layers"], model_rows),
            format_table(["sae", "model", "site", "arch", "d_in", "d_sae"], sae_rows),
        ]
    )


def _add_image_choice(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--image", help="path of a JPEG, PNG or WebP file")
    group.add_argument("--key", help="key of an image in the server's bucket")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cliplens-client", description=__doc__.splitlines()[0])
    env = os.environ
    parser.add_argument(
        "--address",
        default=env.get("CLIPLENS_ADDRESS", DEFAULT_ADDRESS),
        help="host:port, or dns:///host:port for every address of the name, round-robin",
    )
    parser.add_argument(
        "--token", default=env.get("CLIPLENS_TOKEN"), help="bearer token (or $CLIPLENS_TOKEN)"
    )
    parser.add_argument("--app", default=env.get("CLIPLENS_APP", DEFAULT_APP), help="Ray Serve application")
    parser.add_argument(
        "--timeout",
        type=float,
        help=f"deadline per call, seconds (default {DEFAULT_TIMEOUT_S:g}; {HEADS_TIMEOUT_S:g} for heads)",
    )
    parser.add_argument("--tls", action="store_true", help="use TLS with the system's root certificates")
    parser.add_argument("--root-certs", type=Path, help="PEM file of root certificates (implies --tls)")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("embed", help="embed images or texts")
    p.add_argument("--model", required=True, help="model id")
    p.add_argument("--image", action="append", help="image file (repeatable)")
    p.add_argument("--key", action="append", help="bucket key of an image (repeatable)")
    p.add_argument("--text", action="append", help="text (repeatable; excludes images)")
    p.add_argument("--normalize", action="store_true", help="unit-normalise the embeddings")
    p.set_defaults(run=embed)

    p = commands.add_parser("attribute", help="attribute image-text scores to SAE latents")
    p.add_argument("--sae", required=True, help="SAE id")
    _add_image_choice(p)
    p.add_argument("--text", action="append", required=True, help="text (repeatable)")
    p.add_argument("--top", type=int, default=10, help="latents per text")
    p.set_defaults(run=attribute)

    p = commands.add_parser("decompose", help="split an image-text score over layers, heads and patches")
    p.add_argument("--model", required=True, help="model id")
    _add_image_choice(p)
    p.add_argument("--text", required=True)
    p.set_defaults(run=decompose)

    p = commands.add_parser("topk", help="top activating inputs of a latent")
    p.add_argument("--sae", required=True, help="SAE id")
    p.add_argument("--latent", type=int, required=True)
    p.add_argument("-k", type=int, default=16, help="number of inputs")
    p.set_defaults(run=topk)

    p = commands.add_parser("search", help="latents aligned with a text")
    p.add_argument("--sae", required=True, help="SAE id")
    p.add_argument("--text", required=True)
    p.add_argument("--top", type=int, default=10, help="number of latents")
    p.set_defaults(run=search)

    heads = commands.add_parser("heads", help="describe or rank the image encoder's attention heads")
    head_commands = heads.add_subparsers(dest="heads_command", required=True)
    p = head_commands.add_parser("describe", help="TextSpan descriptions of each head (slow on a cache miss)")
    p.add_argument("--model", required=True, help="model id")
    p.add_argument(
        "--pool", action="append", help="candidate description (repeatable; default: shipped pool)"
    )
    p.add_argument("--per-head", type=int, default=0, help="descriptions per head (default 5)")
    p.add_argument("--layer", type=int, action="append", help="layer to describe (repeatable; default: all)")
    p.set_defaults(run=describe_heads)
    p = head_commands.add_parser(
        "rank", help="heads by the accuracy lost when ablated (slow on a cache miss)"
    )
    p.add_argument("--model", required=True, help="model id")
    p.add_argument("--dataset", default="", help="store key of a labelled parquet (default: CIFAR-10 sample)")
    p.add_argument("--class-name", action="append", help="name of label i, in order (repeatable)")
    p.add_argument("--max-images", type=int, default=0, help="images to use (default 2000)")
    p.add_argument("--top", type=int, default=0, help="number of heads (default 10)")
    p.set_defaults(run=rank_heads)

    p = commands.add_parser("models", help="list models and SAEs")
    p.add_argument("--model", default="", help="only the SAEs of this model")
    p.set_defaults(run=models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        root_certificates = args.root_certs.read_bytes() if args.root_certs else None
        with Client(
            args.address,
            token=args.token,
            app=args.app,
            timeout=DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout,
            tls=args.tls,
            root_certificates=root_certificates,
        ) as client:
            print(args.run(client, args))
    except (CliplensClientError, OSError) as error:
        print(f"cliplens-client: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
