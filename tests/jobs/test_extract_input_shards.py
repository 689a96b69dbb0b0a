"""``cliplens extract`` by input shards on a real local Ray: a tar larger than ``rows_per_shard``
becomes several parts, skipped inputs reach the manifest, rows equal a plain forward, and a
re-run skips the committed input shards; an unreadable input shard fails the job naming it."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from job_helpers import reference_forward

from cliplens.cli import main
from cliplens.core.models import LoadedClip
from cliplens.jobs.extract import ExtractConfig, run_extract
from cliplens.store import ActivationRun, LocalStore
from input_files import write_tar

SIZES = (40, 20, 9)  # images per tar; the first also holds one undecodable input


def write_tars(directory: Path, cifar_sample: Path) -> dict[str, bytes]:
    """Three tars of CIFAR JPEGs; returns every decodable input, key -> bytes, in input order."""
    images = pq.read_table(cifar_sample, columns=["jpg"]).column("jpg").to_pylist()
    directory.mkdir()
    inputs: dict[str, bytes] = {}
    offset = 0
    for tar, size in enumerate(SIZES):
        members = {f"t{tar}_{i:02d}.jpg": images[offset + i] for i in range(size)}
        if tar == 0:
            members["t0_bad.jpg"] = b"this is not an image\n"
        write_tar(directory / f"{tar:03d}.tar", members)
        inputs.update(
            {name.removesuffix(".jpg"): data for name, data in members.items() if name != "t0_bad.jpg"}
        )
        offset += size
    return inputs


def test_tars_become_parts_and_a_rerun_skips_the_committed_input_shards(
    ray_session: None, demo_clip: LoadedClip, cifar_sample: Path, tmp_path: Path
) -> None:
    inputs = write_tars(tmp_path / "wds", cifar_sample)
    config = ExtractConfig(
        inputs=str(tmp_path / "wds"),
        input_format="webdataset",
        rows_per_shard=16,
        batch_size=8,
        decode_batch_size=5,
    )
    store = LocalStore(tmp_path / "store")
    summary = run_extract(config, store)
    assert (summary.shards, summary.shards_skipped, summary.inputs, summary.rows) == (3, 0, 70, 70)
    run = ActivationRun(store, summary.runs["final"])
    assert [(s.input_shard, s.part, s.rows, len(s.skipped)) for s in run.manifest.shards] == [
        (0, 0, 16, 0),
        (0, 1, 16, 0),
        (0, 2, 8, 1),
        (1, 0, 16, 0),
        (1, 1, 4, 0),
        (2, 0, 9, 0),
    ]
    assert list(run.manifest.skipped) == ["t0_bad"] and "not an image" in run.manifest.skipped["t0_bad"]
    assert summary.skipped == run.manifest.skipped
    assert run.keys() == list(inputs)
    expected = reference_forward(demo_clip, list(inputs.values()), "final")
    torch.testing.assert_close(run.load_all().float(), expected, atol=2e-2, rtol=1e-2)

    # As if the job had died before input shard 1 was marked done: a re-run redoes that one only.
    run_dir = tmp_path / "store" / "runs" / run.run_id
    (run_dir / "manifest.json").unlink()
    (run_dir / "inputs" / "input-000001.done.json").unlink()
    kept = {path: path.stat().st_mtime_ns for path in (run_dir / "inputs").iterdir()}
    again = run_extract(config, store)
    assert (again.runs, again.shards_skipped, again.inputs, again.rows) == (summary.runs, 2, 70, 20)
    assert {path: path.stat().st_mtime_ns for path in kept} == kept
    rerun = ActivationRun(store, run.run_id)
    assert rerun.manifest.shards == run.manifest.shards
    assert torch.equal(rerun.load_all(), run.load_all())


def test_an_unreadable_input_shard_fails_the_job_with_an_error_naming_it(
    ray_session: None, cifar_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tars(tmp_path / "wds", cifar_sample)
    tar = tmp_path / "wds" / "001.tar"
    tar.write_bytes(tar.read_bytes()[:3000])  # cut inside its second member
    args = ["extract", str(tmp_path / "wds"), "--format", "webdataset", "--store", str(tmp_path / "store")]
    assert main([*args, "--rows-per-shard", "16"]) == 2
    error = (
        "cliplens extract: error: WebDataset shard 001.tar is not a readable tar file: unexpected end of data"
    )
    assert error in capsys.readouterr().err.splitlines()
