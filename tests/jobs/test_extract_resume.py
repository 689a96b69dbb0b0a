"""Killing ``cliplens extract`` half-way and running it again: every row exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from job_helpers import cifar_subset

from cliplens.cli import main
from cliplens.store import ActivationRun, LocalStore

ROWS, PER_SHARD = 256, 16


def done_shards(store: Path) -> list[Path]:
    """The committed input shards' markers."""
    return sorted(store.glob("runs/*/inputs/*.done.json"))


def test_killed_extract_resumes_without_losing_or_duplicating_rows(
    ray_session: None, cifar_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parquet = cifar_subset(cifar_sample, tmp_path, ROWS, row_group_size=PER_SHARD)
    store = tmp_path / "store"
    # ViT-B-32 with random weights at 224 px: slow enough on CPU to be caught half-way. One input
    # shard per row group, of one part each.
    args = ["extract", str(parquet), "--store", str(store), "--model", "ViT-B-32"]
    args += ["--rows-per-shard", str(PER_SHARD), "--input-shard-rows", str(PER_SHARD), "--batch-size", "16"]
    address = ray.get_runtime_context().gcs_address
    job = subprocess.Popen(
        [sys.executable, "-m", "cliplens.cli", *args, "--address", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while len(done_shards(store)) < 2:
            assert job.poll() is None, "the job ended before it could be killed"
            time.sleep(0.1)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    before = {path: path.stat().st_mtime_ns for path in done_shards(store)}
    assert 2 <= len(before) < ROWS // PER_SHARD
    assert not list(store.glob("runs/*/manifest.json"))

    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"({len(before)} already committed, skipped)" in out
    assert {path: path.stat().st_mtime_ns for path in before} == before
    (run_dir,) = list((store / "runs").iterdir())
    run = ActivationRun(LocalStore(store), run_dir.name)
    keys = run.keys()
    assert run.num_rows == ROWS == len(keys) == len(set(keys)) == run.load_all().shape[0]
    assert keys == pq.read_table(parquet, columns=["key"]).column("key").to_pylist()
