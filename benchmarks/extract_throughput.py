"""Extraction throughput end to end versus an in-process loop, same JPEGs, model and batch size.

Pipeline: ``run_extract`` (read parquet, Ray Data decode + preprocess tasks, encoder actor, fp16
shards written to S3: a SeaweedFS server started here on loopback), a fresh store prefix per run.
Its images/s are ``summary.rows / summary.seconds``: from the pipeline's start (after the driver
read the inputs and loaded its model) to the last manifest committed; Ray start-up is excluded and
the wall time of the whole ``run_extract`` call (model load included) is reported beside it.
In-process: ``serve_encoder.in_process``, one loop that decodes (PIL), preprocesses and encodes.
Target: pipeline / in-process >= 0.85. Writes ``benchmarks/results/extract_throughput.{md,json}``.

Run: ``.venv/bin/python benchmarks/extract_throughput.py``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import ray

from cliplens.demo.local_stack import S3_ACCESS_KEY, S3_SECRET_KEY, SeaweedS3
from cliplens.demo.sample import SAMPLE_PARQUET
from cliplens.jobs.extract import ExtractConfig, run_extract
from cliplens.store import open_store
from serve_common import write_results
from serve_encoder import in_process

CIFAR10_TEST = Path("/work/shared/data/cifar10/cifar10-test.parquet")
TARGET = 0.85


def measure(model_id: str, source: Path, count: int, batch: int, workdir: Path) -> dict[str, Any]:
    """Both throughputs for the first ``count`` images of ``source``."""
    table = pq.read_table(source).slice(0, count)
    inputs = workdir / f"{model_id}-{count}.parquet"
    pq.write_table(table, inputs)
    baseline = in_process(model_id, table.column("jpg").to_pylist(), batch)
    store = open_store(f"s3://cliplens-bench/{model_id}-{uuid.uuid4().hex[:8]}")
    start = time.perf_counter()
    summary = run_extract(ExtractConfig(inputs=str(inputs), model=model_id, batch_size=batch), store)
    wall = time.perf_counter() - start
    print("\n".join(f"{model_id}: {line}" for line in summary.lines()))
    return {"model": model_id, "images": summary.rows, "batch_size": batch,
            "pipeline_images_per_s": summary.rows_per_s, "pipeline_seconds": summary.seconds,
            "run_extract_wall_seconds": wall, "in_process_images_per_s": baseline,
            "ratio": summary.rows_per_s / baseline}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images-vit", type=int, default=256, help="ViT-B-32 (random weights), CIFAR-10 test"
    )
    parser.add_argument("--images-demo", type=int, default=2000, help="demo model, the shipped sample")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cliplens-extract-bench-") as tmp:
        s3 = SeaweedS3(Path(tmp) / "s3")
        s3.start()
        env = {"CLIPLENS_S3_ENDPOINT": f"http://{s3.endpoint}",
               "CLIPLENS_S3_ACCESS_KEY": S3_ACCESS_KEY, "CLIPLENS_S3_SECRET_KEY": S3_SECRET_KEY}  # fmt: skip
        os.environ.update(env)
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
        try:
            rows = [
                measure("ViT-B-32", CIFAR10_TEST, args.images_vit, args.batch_size, Path(tmp)),
                measure("demo", SAMPLE_PARQUET, args.images_demo, args.batch_size, Path(tmp)),
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
        "loopback), a fresh store prefix per run. Pipeline images/s = `summary.rows / summary.seconds` "
        "(pipeline start to last manifest committed; Ray start-up and the driver's input read and model "
        "load excluded, the encoder actor's start-up included). In-process: one loop in the driver that "
        "decodes (PIL) the same JPEG bytes, preprocesses and encodes with the same model and batch size, "
        "after a one-image warm-up. ViT-B-32 has random weights (224 px).",
        "",
        "| model | images | batch size | pipeline images/s | in-process images/s | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['model']} | {r['images']} | {r['batch_size']} | {r['pipeline_images_per_s']:.1f} | "
            f"{r['in_process_images_per_s']:.1f} | {r['ratio']:.2f} | {TARGET} | "
            f"{'met' if r['ratio'] >= TARGET else 'NOT met'} |"
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
        f"--images-vit {args.images_vit} --images-demo {args.images_demo} --batch-size {args.batch_size}`",
    ]
    payload = {"rows": rows, "target": TARGET, "cpu_count": os.cpu_count(), "load_average": list(load)}
    write_results("extract_throughput", payload, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
