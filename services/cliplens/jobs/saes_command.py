"""``cliplens saes``: the SAE catalog: ``list``, ``import`` / ``export`` in a peer library's format, and
``pull`` an SAE named in the SAE registry (``assets/saes.json`` plus ``$CLIPLENS_SAES``)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cliplens.core.errors import NotFoundError
from cliplens.core.sae.interop import FORMATS, ImportOptions, peer_format
from cliplens.core.sae.sources import SaeSourceRegistry
from cliplens.store.objects import ObjectStore, open_store
from cliplens.store.sae_import import fetch_source, import_sae
from cliplens.store.saes import SaeRecord, list_saes, load_sae_from_store

HELP = (
    "list the SAE catalog; import, export or pull SAEs in a peer library's format (SAELens; import also "
    "sparsify, saev, overcomplete)"
)
FORMAT_NAMES = sorted(FORMATS)
EXPORT_FORMAT_NAMES = sorted(name for name, fmt in FORMATS.items() if fmt.writes)
OVERCOMPLETE_ARCHS = ("relu", "topk", "batchtopk", "jumprelu")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="every SAE in the catalog with its size, metrics and source")
    _store(listing)

    imports = sub.add_parser("import", help="convert a peer SAE directory into the catalog")
    imports.add_argument(
        "path",
        type=Path,
        help="the peer SAE's directory, or its checkpoint file (saev's sae.pt, overcomplete's model.pt)",
    )
    _format(imports)
    _target(imports)
    _import_options(imports)
    _store(imports)

    export = sub.add_parser("export", help="write a catalog SAE in a peer format (same encode/decode)")
    export.add_argument("sae_id", help="catalog id")
    _format(export, EXPORT_FORMAT_NAMES)
    export.add_argument("path", type=Path, help="directory to write")
    _store(export)

    pull = sub.add_parser("pull", help="fetch an SAE named in the SAE registry and import it")
    pull.add_argument("sae_id", help="id in the SAE registry (also its catalog id)")
    pull.add_argument("--registry", help="an SAE registry JSON file to use instead of the default")
    _store(pull)


def _store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", help="store URI of the SAE catalog (default: $CLIPLENS_STORE or the local store)"
    )


def _format(parser: argparse.ArgumentParser, names: list[str] = FORMAT_NAMES) -> None:
    parser.add_argument("--format", required=True, choices=names, help="peer format")


def _import_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what some checkpoints do not record (an error names any missing)")
    group.add_argument(
        "--arch",
        choices=OVERCOMPLETE_ARCHS,
        help="overcomplete: the SAE class (SAE, TopKSAE, BatchTopKSAE, JumpSAE)",
    )
    group.add_argument(
        "--k", type=int, help="overcomplete: top_k of a TopKSAE (per row; optional for batchtopk)"
    )
    group.add_argument("--threshold", type=float, help="overcomplete: a BatchTopKSAE's running_threshold")
    group.add_argument(
        "--input-mean",
        help="saev: file (.npy, .pt, .safetensors) with the mean its data loader subtracted from activations",
    )
    group.add_argument(
        "--input-scalar", type=float, help="saev: the scalar its data loader divided activations by"
    )


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model id the SAE reads (see `cliplens models`)")
    parser.add_argument(
        "--site",
        help="cliplens site ('final', 'resid:L', 'resid:L:patches'); required unless the files say it",
    )
    parser.add_argument("--sae-id", required=True, help="catalog id to save it as")


def run(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    if args.action == "list":
        print(saes_table(list_saes(store)))
    elif args.action == "import":
        options = ImportOptions(
            arch=args.arch,
            k=args.k,
            threshold=args.threshold,
            input_mean=args.input_mean,
            input_scalar=args.input_scalar,
        )
        origin = str(args.path.resolve())
        _import(store, args.sae_id, str(args.path), args.format, args.model, args.site, origin, options)
    elif args.action == "export":
        checkpoint = load_sae_from_store(store, args.sae_id)
        path = peer_format(args.format).write(checkpoint.sae, args.path)
        print(f"saes export: wrote '{args.sae_id}' as a {args.format} SAE to {path}")
    else:
        registry = (
            SaeSourceRegistry.from_file(args.registry) if args.registry else SaeSourceRegistry.default()
        )
        entry = registry.get(args.sae_id)
        with tempfile.TemporaryDirectory() as tmp:
            local = fetch_source(entry.source, Path(tmp))
            _import(store, entry.id, str(local), entry.format, entry.model, entry.site, entry.source)
    return 0


def _import(
    store: ObjectStore,
    sae_id: str,
    path: str,
    fmt: str,
    model: str,
    site: str | None,
    origin: str,
    options: ImportOptions | None = None,
) -> None:
    _check_model(model)
    record, peer = import_sae(
        store, sae_id, path, fmt=fmt, model_id=model, site=site, origin=origin, options=options
    )
    for note in peer.notes:
        print(f"saes import: note: {note}")
    cfg = record.cfg
    print(
        f"saes import: saved '{sae_id}' ({cfg.arch}, d_in {cfg.d_in}, d_sae {cfg.d_sae}, "
        f"{cfg.model_id} {cfg.site}), {record.provenance}"
    )


def _check_model(model_id: str) -> None:
    from cliplens.core.models import ModelRegistry  # open_clip is slow to import; only import needs it

    registry = ModelRegistry.default()
    if model_id not in registry:
        raise NotFoundError(f"unknown model id '{model_id}'; registered ids: {', '.join(registry.ids())}")


def saes_table(records: list[SaeRecord]) -> str:
    """One row per SAE: id, model, site, architecture, sizes, L0 and R² (when measured), source."""
    header = ("sae id", "model", "site", "arch", "d_in", "d_sae", "L0", "R²", "source")
    rows = [header]
    for record in records:
        cfg, m = record.cfg, record.metrics
        rows.append(
            (
                record.sae_id,
                cfg.model_id or "-",
                cfg.site,
                cfg.arch,
                str(cfg.d_in),
                str(cfg.d_sae),
                f"{m['l0']:.2f}" if "l0" in m else "-",
                f"{m['r2']:.4f}" if "r2" in m else "-",
                record.provenance,
            )
        )
    if not records:
        return "no SAEs in the catalog"
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
