"""An SAE sweep (several SAEs on one read of the activations) vs the same SAEs trained one after another.

Both on the same run, machine and settings: a run of the demo model's activations extracted from
CIFAR-10 test images (``run_extract`` on Ray Data, into a local-directory store; Ray is shut down
before the timings), then TopK SAEs at k = 8, 16, 32, 64 (8x expansion, the ``train-sae`` defaults:
batch 1024, Adam 1e-3, 100 warm-up steps; CPU). Sequential: ``train_sae_on_run`` per SAE, each
reading the run for its input-scale fit, every epoch and its evaluation. Sweep:
``train_sweep_on_run`` with the four jobs, one read of each for all. Rounds alternate which goes
first; figures are medians. The breakdown says where the time goes: one read of the run (iterating
its shuffled training batches: shard reads, checksums, shuffle buffer, fp16 -> fp32) and each SAE's
own training steps (``EpochMetrics.seconds``). Each round also checks that the sweep's SAEs equal
the sequential ones (they share seeds and batch order).

Run: ``.venv/bin/python benchmarks/sae_sweep.py [--site resid:3:patches] [--epochs 3] [--rounds 3] [--data DIR]``
Writes ``benchmarks/results/sae_sweep.{md,json}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import ray
import torch

from cifar_data import add_data_argument, data_flag, test_parquet
from cliplens.core.sae.train import TrainConfig
from cliplens.jobs.extract import ExtractConfig, run_extract
from cliplens.jobs.sae_sweep import Trained, train_sweep_on_run
from cliplens.jobs.sae_training import SaeJob, train_sae_on_run, training_batches
from cliplens.jobs.train_sae_command import sweep_table
from cliplens.store import ActivationRun, LocalStore
from serve_common import write_results

KS = (8, 16, 32, 64)


def extract(parquet: Path, site: str, store: LocalStore) -> str:
    """The run of ``site`` for every image of ``parquet`` (Ray Data, then Ray is shut down)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        return run_extract(ExtractConfig(inputs=str(parquet), sites=(site,)), store).runs[site]
    finally:
        ray.shutdown()


def read_seconds(store: LocalStore, job: SaeJob) -> float:
    """One full read of the run's shuffled training batches, as training consumes them."""
    source = training_batches(ActivationRun(store, job.run_id), job)
    start = time.perf_counter()
    for batch in source:
        batch.float()
    return time.perf_counter() - start


def timed_round(store: LocalStore, jobs: list[SaeJob], round_index: int) -> dict[str, Any]:
    """Sequential and sweep once each (alternating which goes first), plus one read of the run."""

    def sequential() -> list[Trained]:
        return [train_sae_on_run(store, dataclasses.replace(job, sae_id=f"seq-{job.sae_id}")) for job in jobs]

    def sweep() -> list[Trained]:
        return train_sweep_on_run(
            store, [dataclasses.replace(job, sae_id=f"sweep-{job.sae_id}") for job in jobs]
        )

    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    results: dict[str, list[Trained]] = {}
    order = [("sequential", sequential), ("sweep", sweep)]
    for name, train in order if round_index % 2 == 0 else order[::-1]:
        start, cpu_start = time.perf_counter(), time.process_time()
        results[name] = train()
        seconds[name], cpu[name] = time.perf_counter() - start, time.process_time() - cpu_start
    difference = max(
        float((a.state_dict()[key] - b.state_dict()[key]).abs().max())
        for (a, _, _), (b, _, _) in zip(results["sequential"], results["sweep"], strict=True)
        for key in a.state_dict()
    )
    steps = {
        name: sum(epoch.seconds for _, _, history in trained for epoch in history)
        for name, trained in results.items()
    }
    return {
        "sequential_seconds": seconds["sequential"],
        "sweep_seconds": seconds["sweep"],
        "speedup": seconds["sequential"] / seconds["sweep"],
        "sequential_cpu_seconds": cpu["sequential"],
        "sweep_cpu_seconds": cpu["sweep"],
        "cpu_speedup": cpu["sequential"] / cpu["sweep"],
        "sequential_step_seconds": steps["sequential"],
        "sweep_step_seconds": steps["sweep"],
        "read_seconds": read_seconds(store, jobs[0]),
        "max_weight_difference": difference,
        "table": sweep_table(results["sweep"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default="resid:3:patches", help="activation site of the run")
    parser.add_argument("--images", type=int, help="first N images (default: all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    add_data_argument(parser)
    args = parser.parse_args()
    source = test_parquet(args.data)
    with tempfile.TemporaryDirectory(prefix="cliplens-sae-sweep-") as tmp:
        parquet = source
        if args.images:
            parquet = Path(tmp) / "images.parquet"
            pq.write_table(pq.read_table(source).slice(0, args.images), parquet)
        store = LocalStore(Path(tmp) / "store")
        run_id = extract(parquet, args.site, store)
        run = ActivationRun(store, run_id)
        d_in = run.row_shape[-1]
        train = TrainConfig(epochs=args.epochs, device="cpu", progress=False)
        jobs = [SaeJob(run_id, f"topk-k{k}", "topk", 8 * d_in, {"k": k}, train) for k in KS]
        rounds = [timed_round(store, jobs, i) for i in range(args.rounds)]
        vectors, shards = (
            ActivationRun(store, run_id).training_batches(1024).vectors,
            len(run.manifest.shards),
        )
    load = os.getloadavg()
    numbers = [key for key, value in rounds[0].items() if isinstance(value, float)]
    median = {key: statistics.median(r[key] for r in rounds) for key in numbers}
    # reads per approach: the input-scale fit (a partial read), every epoch, the evaluation
    reads = {"sequential": len(KS) * (args.epochs + 1), "sweep": args.epochs + 1}
    payload = {
        "command": f".venv/bin/python benchmarks/sae_sweep.py --site {args.site} --epochs {args.epochs} "
        f"--rounds {args.rounds}"
        + (f" --images {args.images}" if args.images else "")
        + data_flag(args.data),
        "site": args.site,
        "images": run.num_rows,
        "vectors": vectors,
        "d_in": d_in,
        "shards": shards,
        "saes": [{"sae_id": job.sae_id, "k": job.fields["k"], "d_sae": job.d_sae} for job in jobs],
        "epochs": args.epochs,
        "batch_size": jobs[0].batch_size,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_after": load,
        "median": median,
        "rounds": rounds,
    }
    m = median
    lines = [
        "# SAE sweep vs sequential training (demo model, CPU)",
        "",
        f"Command: `{payload['command']}`",
        "",
        f"Run: the demo model's `{args.site}` activations of {run.num_rows} CIFAR-10 test images "
        f"({vectors} vectors of width {d_in}, {shards} shards, local-directory store). SAEs: TopK "
        f"k = {', '.join(map(str, KS))}, d_sae {8 * d_in}, {args.epochs} epochs, batch 1024, CPU "
        f"({torch.get_num_threads()} torch threads, {os.cpu_count()} cores). Medians of {args.rounds} "
        "rounds (alternating which goes first).",
        "",
        "| | wall s | CPU s (this process) | SAE steps s | reads of the run | speedup (wall / CPU) |",
        "|---|---|---|---|---|---|",
        f"| 4 SAEs one after another (`train_sae_on_run` x 4) | {m['sequential_seconds']:.1f} | "
        f"{m['sequential_cpu_seconds']:.1f} | {m['sequential_step_seconds']:.1f} | "
        f"{reads['sequential']} (+ {len(KS)} partial) | 1.00 |",
        f"| sweep (`train_sweep_on_run`, one read for all) | {m['sweep_seconds']:.1f} | "
        f"{m['sweep_cpu_seconds']:.1f} | {m['sweep_step_seconds']:.1f} | {reads['sweep']} (+ 1 partial) | "
        f"**{m['speedup']:.2f}** / **{m['cpu_speedup']:.2f}** |",
        "",
        f"One read of the run takes {m['read_seconds']:.2f} s, so reading accounts for about "
        f"{reads['sequential'] * m['read_seconds']:.1f} s of the sequential time and "
        f"{reads['sweep'] * m['read_seconds']:.1f} s of the sweep's; the rest is the SAEs' own steps "
        "(the same work either way), their evaluation passes and saving. Per-round speedups: "
        + ", ".join(f"{r['speedup']:.2f}" for r in rounds)
        + " (CPU: "
        + ", ".join(f"{r['cpu_speedup']:.2f}" for r in rounds)
        + ")"
        + f". The sweep's SAEs equal the sequential ones (largest weight difference over all rounds: "
        f"{max(r['max_weight_difference'] for r in rounds):.1e}).",
        "",
        "The sweep's table (last round, as `cliplens train-sae --sweep` prints it; seconds = the SAE's own steps):",
        "",
        "```",
        rounds[-1]["table"],
        "```",
        "",
        f"Load average after the run: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (2 cores; other jobs "
        "ran on the machine at the same time, so the CPU seconds of this process are the steadier figure).",
        "",
    ]
    write_results("sae_sweep", payload, "\n".join(lines))


if __name__ == "__main__":
    main()
