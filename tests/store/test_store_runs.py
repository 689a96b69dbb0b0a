"""Activation runs: sharded writes, resumable re-runs, commit, and every way of reading them back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.store import (
    ActivationRun,
    ActivationWriter,
    LocalStore,
    ObjectStore,
    RunIncompleteError,
    RunNotCommittedError,
    RunSpec,
    S3Config,
    run_id,
)
from cliplens.store.runs import run_prefix, shard_stem
from fixtures_servers import s3_store

KEYS = tuple(f"img_{i:03d}" for i in range(23))
SKIPPED = {"img_004": "not an image", "img_017": "truncated"}
WIDTH = 6


def make_spec(**changes: object) -> RunSpec:
    fields: dict[str, object] = {
        "model_id": "tiny",
        "site": "resid:1",
        "preprocess": "resize 32",
        "dataset_id": "toy",
        "keys": KEYS,
        "rows_per_shard": 5,
        "job": {"batch_size": 4},
    }
    return RunSpec(**{**fields, **changes})  # type: ignore[arg-type]


def activation(key: str) -> torch.Tensor:
    """A deterministic row per key, so any misplaced or duplicated row shows."""
    index = int(key.split("_")[1])
    return torch.arange(WIDTH, dtype=torch.float32) + index * 10


def write_shard(writer: ActivationWriter, shard: int) -> bool:
    keys = [k for k in writer.spec.shard_keys(shard) if k not in SKIPPED]
    skipped = {k: SKIPPED[k] for k in writer.spec.shard_keys(shard) if k in SKIPPED}
    rows = torch.stack([activation(k) for k in keys])
    return writer.write_shard(shard, keys, rows, labels=[k[-1] for k in keys], skipped=skipped)


def write_run(store: ObjectStore) -> str:
    writer = ActivationWriter(store, make_spec())
    for shard in writer.pending_shards():
        write_shard(writer, shard)
    writer.commit()
    return writer.run_id


def expected_keys() -> list[str]:
    return [k for k in KEYS if k not in SKIPPED]


def test_run_id_depends_on_every_identity_field() -> None:
    base = make_spec()
    assert base.run_id == run_id("tiny", "resid:1", "resize 32", "toy", KEYS)
    assert len(base.run_id) == 16
    assert make_spec(job={"other": 1}).run_id == base.run_id
    variants = [
        make_spec(model_id="other"),
        make_spec(site="resid:0"),
        make_spec(preprocess="resize 64"),
        make_spec(dataset_id="toy2"),
        make_spec(keys=KEYS[:-1]),
    ]
    assert len({v.run_id for v in variants} | {base.run_id}) == 6


def test_committed_run_reads_back_every_way(store: ObjectStore) -> None:
    run = ActivationRun(store, write_run(store))
    expected = torch.stack([activation(k) for k in expected_keys()]).half()
    assert run.num_rows == len(expected_keys()) and run.row_shape == (WIDTH,)
    assert run.keys() == expected_keys()
    assert run.labels() == [k[-1] for k in expected_keys()]
    assert run.manifest.skipped == SKIPPED
    assert run.manifest.spec["job"] == {"batch_size": 4}
    assert [s.rows for s in run.manifest.shards] == [4, 5, 5, 4, 3]
    assert torch.equal(run.load_all(), expected)
    assert torch.equal(torch.cat(list(run.batches(4))), expected)
    assert [len(b) for b in run.batches(4)] == [4, 4, 4, 4, 4, 1]
    assert torch.equal(run.row("img_013"), activation("img_013").half())
    with pytest.raises(NotFoundError, match="skipped: truncated"):
        run.row("img_017")


def test_shuffled_batches_cover_every_row_once_per_epoch(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    run = ActivationRun(store, write_run(store))
    source = run.training_batches(batch_size=3, buffer_rows=6, seed=1)
    epochs = [list(source), list(source)]
    assert len(source) == 7
    for batches in epochs:
        assert len(batches) == len(source) and all(b.shape[1:] == (WIDTH,) for b in batches)
        firsts = sorted(int(v) for v in torch.cat(batches)[:, 0])
        assert firsts == sorted(int(activation(k)[0]) for k in expected_keys())
    assert not torch.equal(torch.cat(epochs[0]), torch.cat(epochs[1]))


def test_patch_runs_flatten_patches_for_training(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    spec = make_spec(site="resid:1:patches", keys=KEYS[:4], rows_per_shard=2)
    writer = ActivationWriter(store, spec)
    for shard in range(spec.num_shards):
        writer.write_shard(shard, list(spec.shard_keys(shard)), torch.randn(2, 3, WIDTH))
    writer.commit()
    run = ActivationRun(store, spec.run_id)
    assert run.row_shape == (3, WIDTH) and run.load_all().shape == (4, 3, WIDTH)
    batches = list(run.training_batches(batch_size=5, buffer_rows=5))
    assert [b.shape for b in batches] == [(5, WIDTH), (5, WIDTH), (2, WIDTH)]


def test_s3_and_local_runs_hold_identical_tensors(tmp_path: Path, s3_config: S3Config) -> None:
    local, s3 = LocalStore(tmp_path), s3_store(s3_config)
    local_id, s3_id = write_run(local), write_run(s3)
    assert local_id == s3_id
    local_run, s3_run = ActivationRun(local, local_id), ActivationRun(s3, s3_id)
    assert torch.equal(local_run.load_all(), s3_run.load_all())
    assert local_run.keys() == s3_run.keys()
    assert local_run.manifest == s3_run.manifest


def test_interrupted_run_resumes_without_losing_or_duplicating_rows(store: ObjectStore) -> None:
    spec = make_spec()
    first = ActivationWriter(store, spec)
    for shard in (0, 2):
        write_shard(first, shard)
    # a worker died half-way through shard 3: its tensor landed, its done marker did not
    run_store = store.child(run_prefix(spec.run_id))
    run_store.put_bytes(f"{shard_stem(3)}.safetensors", b"partial garbage")
    with pytest.raises(RunIncompleteError, match="3 of 5 shards not written"):
        first.commit()
    with pytest.raises(RunNotCommittedError, match="not committed"):
        ActivationRun(store, spec.run_id)

    rerun = ActivationWriter(store, spec)
    assert rerun.pending_shards() == [1, 3, 4]
    assert [write_shard(rerun, shard) for shard in range(spec.num_shards)] == [False, True, False, True, True]
    rerun.commit()
    run = ActivationRun(store, spec.run_id)
    assert run.keys() == expected_keys()
    assert torch.equal(run.load_all(), torch.stack([activation(k) for k in expected_keys()]).half())


def test_writer_rejects_rows_that_do_not_match_the_shard(tmp_path: Path) -> None:
    writer = ActivationWriter(LocalStore(tmp_path), make_spec())
    keys = list(writer.spec.shard_keys(1))
    with pytest.raises(InvalidInputError, match="in order, each either written or skipped"):
        writer.write_shard(1, keys[:-1], torch.zeros(4, WIDTH))
    with pytest.raises(InvalidInputError, match="in order"):
        writer.write_shard(1, keys[::-1], torch.zeros(5, WIDTH))
    with pytest.raises(InvalidInputError, match=r"rows = 5 keys, got \(4, 6\)"):
        writer.write_shard(1, keys, torch.zeros(4, WIDTH))
    with pytest.raises(InvalidInputError, match="out of range"):
        writer.write_shard(9, keys, torch.zeros(5, WIDTH))


def test_corrupted_shard_fails_its_checksum(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    run_key = write_run(store)
    path = tmp_path / run_prefix(run_key) / f"{shard_stem(1)}.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match="shard 1 does not match its sha256"):
        ActivationRun(store, run_key).load_all()
