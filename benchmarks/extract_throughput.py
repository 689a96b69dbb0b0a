"""Extraction throughput end to end versus an in-process loop, same JPEGs, model and batch size.

Pipeline: ``run_extract`` (read parquet, Ray Data decode + preprocess tasks, encoder actor, fp16
shards written to S3: a SeaweedFS server started here on loopback), a fresh store prefix per run.
Two pipeline rates: steady state (``summary.steady_rows_per_s``: the rows after the first encoded
batch reached the driver, up to the last manifest committed) and overall (``summary.rows /
summary.seconds``: from the pipeline's start, so worker and actor start-up, model load and warm-up
included). In-process: ``serve_encoder.in_process``, one loop that decodes (PIL), preprocesses and
encodes, timed after its model load and a warm-up image, so the steady-state rate is the like for
like comparison. Target: steady pipeline / in-process >= 0.85; both ratios are reported. Writes ``benchmarks/results/extract_throughput.{md,json}``.

Images: CIFAR-10 test JPEGs, from the shipped 2,000-image sample unless ``--data DIR`` names a CIFAR-10
folder (its ``cifar10-test.parquet``, 10,000 images). When a model asks for more images than the data
holds (the default ``--images-demo 10000`` on the sample), the data is repeated to that count, each
repeat under new keys: every image is still read, decoded, encoded and written, all 32 px JPEGs of the
same kind, so images/s stay comparable; nothing in the pipeline caches by content.

Run: ``.venv/bin/python benchmarks/extract_throughput.py [--data path/to/cifar10]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import ray

from cifar_data import add_data_argument, data_flag, test_parquet, tiled_rows
from cliplens.jobs.extract import ExtractConfig, run_extract
from cliplens.store import open_store
from cliplens.store.local_stack import S3_ACCESS_KEY, S3_SECRET_KEY, SeaweedS3
from serve_common import write_results
from serve_encoder import in_process

TARGET = 0.85


def measure(model_id: str, source: Path, count: int, batch: int, workdir: Path) -> dict[str, Any]:
    """Both throughputs for the first ``count`` images of ``source`` (repeated when it has fewer)."""
    table = tiled_rows(pq.read_table(source), count)
    inputs = workdir / f"{model_id}-{count}.parquet"
    pq.write_table(table, inputs)
    baseline = in_process(model_id, table.column("jpg").to_pylist(), batch)
    store = open_store(f"s3://cliplens-bench/{model_id}-{uuid.uuid4().hex[:8]}")
    start = time.perf_counter()
    summary = run_extract(ExtractConfig(inputs=str(inputs), model=model_id, batch_size=batch), store)
    wall = time.perf_counter() - start
    print("\n".join(f"{model_id}: {line}" for line in summary.lines()))
    return {"model": model_id, "images": summary.rows, "batch_size": batch,
            "steady_images_per_s": summary.steady_rows_per_s, "startup_seconds": summary.startup_seconds,
            "pipeline_images_per_s": summary.rows_per_s, "pipeline_seconds": summary.seconds,
            "run_extract_wall_seconds": wall, "in_process_images_per_s": baseline,
            "ratio": summary.steady_rows_per_s / baseline,
            "overall_ratio": summary.rows_per_s / baseline}  # fmt: skip


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of per-field medians over alternating rounds, ratios from the medians, each round's ratio."""
    numbers = [key for key, value in rounds[0].items() if isinstance(value, float)]
    row = {**rounds[0], **{key: statistics.median(r[key] for r in rounds) for key in numbers}}
    row["ratio"] = row["steady_images_per_s"] / row["in_process_images_per_s"]
    row["overall_ratio"] = row["pipeline_images_per_s"] / row["in_process_images_per_s"]
    row["ratio_per_round"] = [r["ratio"] for r in rounds]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images-vit", type=int, default=1024, help="ViT-B-32 (random weights), CIFAR-10 test"
    )
    parser.add_argument("--images-demo", type=int, default=10000, help="demo model, CIFAR-10 test")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--rounds", type=int, default=3, help="in-process and pipeline runs per model; figures are medians"
    )
    add_data_argument(parser)
    args = parser.parse_args()
    source = test_parquet(args.data)
    available = pq.ParquetFile(source).metadata.num_rows
    with tempfile.TemporaryDirectory(prefix="cliplens-extract-bench-") as tmp:
        s3 = SeaweedS3(Path(tmp) / "s3")
        s3.start()
        env = {"CLIPLENS_S3_ENDPOINT": f"http://{s3.endpoint}",
               "CLIPLENS_S3_ACCESS_KEY": S3_ACCESS_KEY, "CLIPLENS_S3_SECRET_KEY": S3_SECRET_KEY}  # fmt: skip
        os.environ.update(env)
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
        try:
            rows = [
                median_of(
                    [measure(model, source, count, args.batch_size, Path(tmp)) for _ in range(args.rounds)]
                )
                for model, count in (("ViT-B-32", args.images_vit), ("demo", args.images_demo))
            ]
            load = os.getloadavg()
        finally:
            ray.shutdown()
            s3.stop()
    lines = [
        f"# Extract: pipeline images/s vs an in-process loop (target: ratio >= {TARGET})",
        "",
        "Pipeline: `run_extract` on a parquet of CIFAR-10 JPEGs (32 px): Ray Data decode + preprocess "
        "tasks, one encoder actor, `final` embeddings written as fp16 shards to S3 (a SeaweedFS server on "
        "loopback), a fresh store prefix per run. Steady images/s = the rows after the first encoded "
        "block (one decode batch, 256 images) reached the driver, over the time from then to the last "
        "manifest committed (reading, decoding, encoding and writing all included). Overall images/s = "
        "all rows over the time from the pipeline's start, so the one-off start-up (worker processes, the "
        "encoder actor's model load and the first block's encoding) is in it; the start-up column is the "
        "time to that first block. In-process: one loop in the driver that decodes (PIL) the same "
        "JPEG bytes, preprocesses and encodes with the same model and batch size, timed after its model "
        "load and a one-image warm-up: the steady rate is the like-for-like comparison and carries the "
        f"target. ViT-B-32 has random weights (224 px). Each figure is the median of {args.rounds} rounds "
        "(in-process loop, then pipeline), ratios are of the medians; the last column gives each round's.",
        "",
        f"Data: `{source.name}` ({available} images); a model asked for more gets them repeated under new "
        "keys (every image still read, decoded, encoded and written).",
        "",
        "| model | images | batch size | in-process images/s | steady images/s | ratio | target | met | start-up s | overall images/s | overall ratio | ratio per round |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['model']} | {r['images']} | {r['batch_size']} | {r['in_process_images_per_s']:.1f} | "
            f"{r['steady_images_per_s']:.1f} | {r['ratio']:.2f} | {TARGET} | "
            f"{'met' if r['ratio'] >= TARGET else 'NOT met'} | {r['startup_seconds']:.1f} | "
            f"{r['pipeline_images_per_s']:.1f} | {r['overall_ratio']:.2f} | "
            f"{' / '.join(f'{ratio:.2f}' for ratio in r['ratio_per_round'])} |"
            for r in rows
        ),
        "",
        "Wall time of the whole `run_extract` call (reading inputs and loading the model included): "
        + "; ".join(
            f"{r['model']} {r['run_extract_wall_seconds']:.1f} s (pipeline {r['pipeline_seconds']:.1f} s)"
            for r in rows
        )
        + ".",
        "",
        f"Machine: {os.cpu_count()} CPU cores (shared), no GPU; Ray started with `num_cpus=4` as the demo "
        f"does; load average at the end of the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        "(1 / 5 / 15 min).",
        "",
        "Run: `.venv/bin/python benchmarks/extract_throughput.py "
        f"--images-vit {args.images_vit} --images-demo {args.images_demo} --batch-size {args.batch_size} "
        f"--rounds {args.rounds}{data_flag(args.data)}`",
    ]
    payload = {"rows": rows, "target": TARGET, "cpu_count": os.cpu_count(), "load_average": list(load)}
    write_results("extract_throughput", payload, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
