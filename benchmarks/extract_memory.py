"""Peak driver memory of ``cliplens extract`` at 20,000 and 200,000 images: flat, not growing with the data.

Data: tiny deterministic images (16x16 RGB noise from a seeded generator, PNG), written as WebDataset
tars of ``--per-shard`` images each (``--format parquet``: parquet files of that many rows), so the
data set is many input shards. Each size runs ``cliplens extract`` through its command line in a
subprocess (the driver; it starts its own local Ray, whose daemons and workers are other processes)
with the demo model, into a fresh local store. Peak driver RSS: a thread here samples the driver
process's resident set size (``psutil.Process(pid).memory_info().rss``, the driver process only,
not Ray's daemons or workers) every 20 ms and keeps the maximum. Goal: the 200k run's peak <= 1.2x
the 20k run's. Writes ``benchmarks/results/extract_memory.{md,json}``.

Run: ``.venv/bin/python benchmarks/extract_memory.py [--sizes 20000 200000] [--per-shard 1000]``
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from serve_common import write_results

GOAL = 1.2
SAMPLE_EVERY_S = 0.02
SUMMARY_LINES = tuple(f"extract: {word}" for word in ("runs:", "inputs:", "rows encoded:", "written:"))
EXTRACT_FLAGS = ("--model", "demo", "--rows-per-shard", "1024", "--batch-size", "256")


def tiny_images(start: int, count: int, size: int = 16) -> list[bytes]:
    """PNGs of images ``start .. start + count``: noise seeded by the image's number, so every run
    writes the same bytes."""
    images = []
    for index in range(start, start + count):
        pixels = np.random.default_rng(index).integers(0, 256, (size, size, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, "PNG")
        images.append(buffer.getvalue())
    return images


def write_dataset(directory: Path, images: int, per_shard: int, fmt: str) -> None:
    directory.mkdir(parents=True)
    for shard, start in enumerate(range(0, images, per_shard)):
        data = tiny_images(start, min(per_shard, images - start))
        keys = [f"img{start + i:07d}" for i in range(len(data))]
        if fmt == "parquet":
            table = pa.table({"key": keys, "jpg": pa.array(data, pa.binary()), "label": [None] * len(keys)})
            pq.write_table(table, directory / f"{shard:05d}.parquet")
            continue
        with tarfile.open(directory / f"{shard:05d}.tar", "w") as tar:
            for key, image in zip(keys, data, strict=True):
                info = tarfile.TarInfo(f"{key}.png")
                info.size = len(image)
                tar.addfile(info, io.BytesIO(image))


def peak_driver_rss(command: list[str]) -> tuple[int, float, str]:
    """Run ``command``; its peak RSS (bytes, sampled), wall seconds and output."""
    start = time.perf_counter()
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        process = psutil.Process(driver.pid)
        while not done.is_set():
            try:
                peak = max(peak, process.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            time.sleep(SAMPLE_EVERY_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = driver.communicate()
    done.set()
    sampler.join()
    if driver.returncode != 0:
        sys.exit(f"extract failed ({driver.returncode}):\n{output[-3000:]}")
    return peak, time.perf_counter() - start, output


def measure(images: int, per_shard: int, fmt: str, workdir: Path) -> dict[str, Any]:
    inputs, store = workdir / f"inputs-{images}", workdir / f"store-{images}"
    write_dataset(inputs, images, per_shard, fmt)
    command = [sys.executable, "-m", "cliplens.cli", "extract", str(inputs), "--format", _format_flag(fmt)]
    command += ["--store", str(store), *EXTRACT_FLAGS]
    peak, wall, output = peak_driver_rss(command)
    summary = [line for line in output.splitlines() if line.startswith(SUMMARY_LINES)]
    print(f"{images:,} images: peak driver RSS {peak / 2**20:,.0f} MiB, {wall:,.0f} s")
    print("\n".join(summary))
    return {
        "images": images,
        "input_shards": -(-images // per_shard),
        "peak_driver_rss_mib": peak / 2**20,
        "wall_seconds": wall,
        "summary": summary,
    }


def _format_flag(fmt: str) -> str:
    return "parquet" if fmt == "parquet" else "webdataset"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--per-shard", type=int, default=1000, help="images per tar or parquet file")
    parser.add_argument("--format", choices=("tar", "parquet"), default="tar")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cliplens-extract-memory-") as tmp:
        results = [measure(images, args.per_shard, args.format, Path(tmp)) for images in args.sizes]
    ratio = results[-1]["peak_driver_rss_mib"] / results[0]["peak_driver_rss_mib"]
    command = "benchmarks/extract_memory.py " + " ".join(sys.argv[1:])
    payload = {
        "command": f".venv/bin/python {command.strip()}",
        "extract_flags": list(EXTRACT_FLAGS),
        "format": args.format,
        "per_shard": args.per_shard,
        "cpus": psutil.cpu_count(),
        "results": results,
        "ratio_largest_to_smallest": ratio,
        "goal": GOAL,
        "met": ratio <= GOAL,
    }
    rows = "\n".join(
        f"| {r['images']:,} | {r['input_shards']:,} | {r['peak_driver_rss_mib']:,.0f} | {r['wall_seconds']:,.0f} |"
        for r in results
    )
    markdown = (
        "# `cliplens extract`: peak driver memory against data set size\n\n"
        f"Command: `{payload['command']}` ({psutil.cpu_count()} CPUs). Data: 16x16 RGB noise PNGs "
        f"(deterministic), {args.per_shard:,} per {'tar' if args.format == 'tar' else 'parquet file'}; "
        f"`cliplens extract INPUTS --format {_format_flag(args.format)} {' '.join(EXTRACT_FLAGS)}` "
        "in a subprocess, which starts its own local Ray. Peak driver RSS: the driver process's "
        f"resident set size, sampled every {SAMPLE_EVERY_S * 1000:.0f} ms with psutil (Ray's daemons and "
        "workers are other processes and not counted).\n\n"
        "| images | input shards | peak driver RSS (MiB) | wall (s) |\n|---|---|---|---|\n"
        f"{rows}\n\n"
        f"Ratio {results[-1]['images']:,} / {results[0]['images']:,} images: **{ratio:.3f}** "
        f"(goal <= {GOAL}: {'met' if ratio <= GOAL else 'not met'}).\n\n"
        "Wall times include start-up and depend on what else the machine runs: they are not "
        "throughput figures (see `extract_throughput.md`).\n"
    )
    write_results("extract_memory", payload, markdown)


if __name__ == "__main__":
    main()
