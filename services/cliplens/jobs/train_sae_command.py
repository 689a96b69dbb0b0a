"""``cliplens train-sae``: train an SAE of any architecture on a stored run, into the SAE catalog."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from cliplens.core.errors import InvalidInputError
from cliplens.core.sae import ARCHITECTURES, config_class
from cliplens.core.sae.config import SaeConfig
from cliplens.core.sae.train import TrainConfig
from cliplens.jobs.sae_training import SaeJob, train_sae_on_run
from cliplens.store.objects import open_store
from cliplens.store.run_reader import ActivationRun

HELP = "train an SAE on a stored activation run and save it (with its metrics) in the SAE catalog"
# Flags of architecture-specific config fields (each applies only to the architectures that have it).
ARCH_FLAGS: dict[str, tuple[type, str]] = {
    "k": (int, "active latents per row (topk, batchtopk, matryoshka)"),
    "aux_k": (int, "AuxK dead-latent loss: top aux-k dead pre-activations (0 = off)"),
    "aux_coeff": (float, "weight of the AuxK loss"),
    "l1_coeff": (float, "L1 penalty (relu)"),
    "l0_coeff": (float, "L0 penalty (jumprelu)"),
    "bandwidth": (float, "straight-through bandwidth (jumprelu)"),
    "init_threshold": (float, "initial threshold (jumprelu)"),
    "threshold_momentum": (float, "inference-threshold EMA rate (batchtopk, matryoshka)"),
    "prefixes": (str, "nested dictionary sizes, comma-separated, ending at d_sae (matryoshka)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", help="store URI holding the run (default: $CLIPLENS_STORE or the local store)"
    )
    parser.add_argument("--run", required=True, help="activation run id (see the extract summary)")
    parser.add_argument("--sae-id", help="catalog id (default: <arch>-<run>-<d_sae>)")
    add_sae_arguments(parser)


def add_sae_arguments(
    parser: argparse.ArgumentParser, *, epochs: int = 5, batch_size: int = 1024, warmup_steps: int = 100
) -> None:
    """The SAE's architecture, size and training flags (shared with ``cliplens index``)."""
    parser.add_argument("--arch", default="topk", choices=sorted(ARCHITECTURES), help="SAE architecture")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--d-sae", type=int, help="number of latents")
    size.add_argument("--expansion", type=int, default=8, help="d_sae = expansion x d_in (default: 8)")
    for name, (kind, text) in ARCH_FLAGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=text)
    parser.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default: {epochs})")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: 1e-3)")
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=warmup_steps,
        help=f"learning-rate warm-up (default: {warmup_steps})",
    )
    parser.add_argument(
        "--batch-size", type=int, default=batch_size, help=f"rows per training batch (default: {batch_size})"
    )
    parser.add_argument("--buffer-rows", type=int, default=65536, help="shuffle buffer rows")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the SAE init, the batch order and training (fixed default 0: the same command "
        "on the same data gives the same SAE on CPU)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


@dataclasses.dataclass(frozen=True)
class SaeSettings:
    """What :func:`add_sae_arguments`'s flags say: the architecture's own fields and the training."""

    fields: dict[str, Any]
    train: TrainConfig


def sae_settings(args: argparse.Namespace) -> SaeSettings:
    return SaeSettings(
        fields=arch_fields(args.arch, {name: getattr(args, name) for name in ARCH_FLAGS}),
        train=TrainConfig(
            epochs=args.epochs, lr=args.lr, warmup_steps=args.warmup_steps, seed=args.seed, device=args.device
        ),
    )


def run(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    sae = sae_settings(args)
    d_in = ActivationRun(store, args.run).row_shape[-1]
    d_sae = args.d_sae or args.expansion * d_in
    job = SaeJob(
        run_id=args.run,
        sae_id=args.sae_id or f"{args.arch}-{args.run}-{d_sae}",
        arch=args.arch,
        d_sae=d_sae,
        fields=sae.fields,
        train=sae.train,
        batch_size=args.batch_size,
        buffer_rows=args.buffer_rows,
    )
    _, record, history = train_sae_on_run(store, job)
    for epoch in history:
        m = epoch.metrics
        print(f"train-sae: epoch {epoch.epoch}: loss {epoch.loss:.4f}, L0 {m.l0:.1f}, R² {m.r2:.4f}")
    metrics = ", ".join(f"{name} {value:.4g}" for name, value in record.metrics.items())
    print(
        f"train-sae: saved SAE '{record.sae_id}' ({args.arch}, d_in {d_in}, d_sae {d_sae}) on run {args.run}"
    )
    print(f"train-sae: metrics: {metrics}")
    return 0


def arch_fields(arch: str, given: dict[str, Any]) -> dict[str, Any]:
    """The architecture-specific flags that were given, checked against ``arch``'s config fields."""
    known = {f.name for f in dataclasses.fields(config_class(arch))} - {
        f.name for f in dataclasses.fields(SaeConfig)
    }
    known |= {"aux_k", "aux_coeff"}
    fields = {name: value for name, value in given.items() if value is not None}
    wrong = sorted(set(fields) - known)
    if wrong:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in wrong)
        raise InvalidInputError(f"{flags} do(es) not apply to SAE architecture '{arch}'")
    if "prefixes" in fields:
        try:
            fields["prefixes"] = tuple(int(p) for p in fields["prefixes"].split(","))
        except ValueError:
            raise InvalidInputError(
                f"--prefixes must be comma-separated integers, got '{fields['prefixes']}'"
            ) from None
    return fields
