"""``cliplens train-sae``: train an SAE of any architecture on a stored run, into the SAE catalog.

With ``--sweep FILE`` it trains several SAEs on one read of the run. FILE (YAML or JSON) holds
shared settings (any SAE flag, with underscores) and a list ``saes`` of entries, each a ``sae_id``
and its own overrides::

    epochs: 5
    arch: topk
    saes:
      - {sae_id: topk-k16, k: 16}
      - {sae_id: relu-l1-3, arch: relu, l1_coeff: 0.003}

Settings come from the entry, else the file's top level, else the command line, else the flag's
default. :data:`SWEEP_SHARED` can only be set at the top level (one read feeds every SAE), and the
top-level ``seed`` fixes the batch order and the init of entries without their own ``seed`` (an
entry's ``seed`` changes only its init).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from cliplens.core.errors import InvalidInputError
from cliplens.core.sae import ARCHITECTURES, JumpReluConfig, ReluConfig, TopKConfig, config_class
from cliplens.core.sae.config import SaeConfig
from cliplens.core.sae.train import TrainConfig
from cliplens.jobs.sae_sweep import Trained, train_sweep_on_run
from cliplens.jobs.sae_training import SaeJob, train_sae_on_run
from cliplens.store.objects import ObjectStore, open_store
from cliplens.store.run_reader import ActivationRun
from cliplens.store.saes import check_sae_id

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
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--sae-id", help="catalog id (default: <arch>-<run>-<d_sae>)")
    target.add_argument(
        "--sweep",
        type=Path,
        metavar="FILE",
        help="train several SAEs on one read of the run: a YAML or JSON file of shared settings (these "
        "flags, with underscores) and a list 'saes' of entries (sae_id and overrides)",
    )
    parser.add_argument(
        "--address", help="Ray cluster of --sweep (default: $RAY_ADDRESS; GPU actors when it has GPUs)"
    )
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


def sae_settings(args: argparse.Namespace, spell: Callable[[str], str] | None = None) -> SaeSettings:
    """The settings of ``args``; ``spell`` names a setting in errors (default: as a flag)."""
    return SaeSettings(
        fields=arch_fields(args.arch, {name: getattr(args, name) for name in ARCH_FLAGS}, spell),
        train=TrainConfig(
            epochs=args.epochs, lr=args.lr, warmup_steps=args.warmup_steps, seed=args.seed, device=args.device
        ),
    )


def sae_job(
    args: argparse.Namespace,
    d_in: int,
    *,
    spell: Callable[[str], str] | None = None,
    order_seed: int | None = None,
) -> SaeJob:
    """The job that ``args`` (flags, or a sweep entry's settings) describe on ``args.run``."""
    sae = sae_settings(args, spell)
    d_sae = args.d_sae or args.expansion * d_in
    return SaeJob(
        run_id=args.run,
        sae_id=args.sae_id or f"{args.arch}-{args.run}-{d_sae}",
        arch=args.arch,
        d_sae=d_sae,
        fields=sae.fields,
        train=sae.train,
        batch_size=args.batch_size,
        buffer_rows=args.buffer_rows,
        order_seed=order_seed,
    )


def run(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    d_in = ActivationRun(store, args.run).row_shape[-1]
    if args.sweep:
        return run_sweep(args, store, d_in)
    _, record, history = train_sae_on_run(store, sae_job(args, d_in))
    for epoch in history:
        m = epoch.metrics
        print(f"train-sae: epoch {epoch.epoch}: loss {epoch.loss:.4f}, L0 {m.l0:.1f}, R² {m.r2:.4f}")
    metrics = ", ".join(f"{name} {value:.4g}" for name, value in record.metrics.items())
    print(
        f"train-sae: saved SAE '{record.sae_id}' ({args.arch}, d_in {d_in}, d_sae {record.cfg.d_sae}) "
        f"on run {args.run}"
    )
    print(f"train-sae: metrics: {metrics}")
    return 0


def run_sweep(args: argparse.Namespace, store: ObjectStore, d_in: int) -> int:
    """Train the sweep file's SAEs together and print their table."""
    jobs = sweep_jobs(args, d_in)
    started = time.perf_counter()
    results = train_sweep_on_run(store, jobs, address=args.address)
    print(
        f"train-sae: sweep {args.sweep}: {len(jobs)} SAEs trained on one read of run {args.run} per "
        f"epoch in {time.perf_counter() - started:.1f} s, saved to the catalog"
    )
    print(sweep_table(results))
    return 0


def sweep_table(results: Sequence[Trained]) -> str:
    """One row per SAE: id, architecture, size, sparsity setting, metrics and its own training seconds."""
    header = ("sae id", "arch", "d_sae", "k / l1", "L0", "R²", "dead", "final loss", "seconds")
    rows = [header]
    for _, record, history in results:
        m = record.metrics
        rows.append(
            (
                record.sae_id,
                record.cfg.arch,
                str(record.cfg.d_sae),
                _sparsity(record.cfg),
                f"{m['l0']:.2f}",
                f"{m['r2']:.4f}",
                f"{m['dead_fraction']:.3f}",
                f"{m['final_train_loss']:.4f}",
                f"{sum(epoch.seconds for epoch in history):.1f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _sparsity(cfg: SaeConfig) -> str:
    if isinstance(cfg, TopKConfig):
        return f"k={cfg.k}"
    if isinstance(cfg, ReluConfig):
        return f"l1={cfg.l1_coeff:g}"
    if isinstance(cfg, JumpReluConfig):
        return f"l0={cfg.l0_coeff:g}"
    return "-"


SWEEP_LIST = "saes"
# Settings every SAE of a sweep shares, since one shuffled read of the run feeds them all.
SWEEP_SHARED = ("epochs", "batch_size", "buffer_rows", "device")


def sweep_jobs(args: argparse.Namespace, d_in: int) -> list[SaeJob]:
    """The jobs of the sweep file ``args.sweep`` on ``args.run`` (width ``d_in``), checked entry by entry."""
    where = f"sweep file {args.sweep}"
    try:
        document = yaml.safe_load(Path(args.sweep).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"{where}: cannot read it: {exc}") from None
    entries = document.get(SWEEP_LIST) if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InvalidInputError(
            f"{where}: expected a mapping of shared settings with a non-empty list '{SWEEP_LIST}' of SAE entries"
        )
    settings = _setting_actions()
    shared = {key: value for key, value in document.items() if key != SWEEP_LIST}
    base = _apply(vars(args), shared, settings, where)
    jobs: list[SaeJob] = []
    for i, entry in enumerate(entries):
        sae_id = entry.get("sae_id") if isinstance(entry, dict) else None
        if not isinstance(sae_id, str):
            raise InvalidInputError(f"{where}: {SWEEP_LIST}[{i}] must be a mapping with a sae_id (a string)")
        label = f"{where}: SAE '{sae_id}' ({SWEEP_LIST}[{i}])"
        try:
            check_sae_id(sae_id)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{label}: {exc}") from None
        if sae_id in {job.sae_id for job in jobs}:
            raise InvalidInputError(f"{label}: sae_id '{sae_id}' is already used by an earlier entry")
        own = {key: value for key, value in entry.items() if key != "sae_id"}
        for key in own:
            if key in SWEEP_SHARED:
                raise InvalidInputError(
                    f"{label}: '{key}' is shared by every SAE of a sweep (one read of the activations "
                    f"feeds them all: {', '.join(SWEEP_SHARED)}); set it at the top level"
                )
        values = _apply(base, own, settings, label) | {"sae_id": sae_id}
        try:
            spell = functools.partial(_spell, own=own, shared=shared)
            jobs.append(sae_job(argparse.Namespace(**values), d_in, spell=spell, order_seed=base["seed"]))
        except InvalidInputError as exc:
            raise InvalidInputError(f"{label}: {exc}") from None
    return jobs


def _setting_actions() -> dict[str, argparse.Action]:
    """The SAE flags' argparse actions by setting name (dest)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_sae_arguments(parser)
    return {action.dest: action for action in parser._actions}


def _apply(
    values: dict[str, Any], layer: dict[str, Any], settings: dict[str, argparse.Action], where: str
) -> dict[str, Any]:
    """``values`` overridden by one layer of a sweep file, each value checked against its flag."""
    out = dict(values)
    for key, value in layer.items():
        if key not in settings:
            raise InvalidInputError(
                f"{where}: unknown key '{key}'; settings are {', '.join(sorted(settings))}"
            )
        out[key] = _coerce(value, settings[key], f"{where}: {key}")
    if "d_sae" in layer and "expansion" in layer:
        raise InvalidInputError(f"{where}: give d_sae or expansion, not both")
    if "expansion" in layer:
        out["d_sae"] = None
    return out


def _coerce(value: Any, action: argparse.Action, where: str) -> Any:
    """``value`` as its flag would parse it: ints stay ints, numbers (or text, as YAML reads 3e-3) become
    floats, a list becomes comma-separated text; choices are checked."""
    kind = action.type or str
    if isinstance(value, list) and kind is str:
        value = ",".join(map(str, value))
    if kind is float and isinstance(value, int | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, kind):  # type: ignore[arg-type]
        raise InvalidInputError(f"{where} must be {_KINDS.get(kind, 'text')}, got {value!r}")
    if action.choices is not None and value not in action.choices:
        raise InvalidInputError(
            f"{where} must be one of {', '.join(map(str, action.choices))}, got {value!r}"
        )
    return value


_KINDS: dict[Any, str] = {int: "an integer", float: "a number"}


def _spell(key: str, own: dict[str, Any], shared: dict[str, Any]) -> str:
    """A setting's name in a sweep entry's errors, saying where it came from when not from the entry."""
    if key in own:
        return key
    return f"{key} (set at the top level)" if key in shared else f"{key} (from the command line)"


def arch_fields(
    arch: str, given: dict[str, Any], spell: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """The architecture-specific flags that were given, checked against ``arch``'s config fields.

    ``spell`` names a setting in errors (default: as a flag, ``--l1-coeff``).
    """
    name = spell or _flag
    known = {f.name for f in dataclasses.fields(config_class(arch))} - {
        f.name for f in dataclasses.fields(SaeConfig)
    }
    known |= {"aux_k", "aux_coeff"}
    fields = {name: value for name, value in given.items() if value is not None}
    wrong = sorted(set(fields) - known)
    if wrong:
        raise InvalidInputError(
            f"{', '.join(map(name, wrong))} do(es) not apply to SAE architecture '{arch}'"
        )
    if "prefixes" in fields:
        try:
            fields["prefixes"] = tuple(int(p) for p in fields["prefixes"].split(","))
        except ValueError:
            raise InvalidInputError(
                f"{name('prefixes')} must be comma-separated integers, got '{fields['prefixes']}'"
            ) from None
    return fields


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"
