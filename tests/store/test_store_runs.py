"""Activation runs: sharded writes, resumable re-runs, commit, and every way of reading them back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.store import (
    ActivationRun,
    ActivationWriter,
    InputShard,
    LocalStore,
    ObjectStore,
    RunIncompleteError,
    RunNotCommittedError,
    RunSpec,
    S3Config,
    ShardInfo,
    run_id,
)
from cliplens.store.runs import part_stem, run_prefix
from fixtures_servers import s3_store

KEYS = tuple(f"img_{i:03d}" for i in range(23))
SKIPPED = {"img_004": "not an image", "img_017": "truncated"}
WIDTH = 6
# Three input shards (10, 7 and 6 inputs) in parts of at most 4: rows 4 3 2 | 4 3 | 3 2.
BOUNDS = (0, 10, 17, 23)
INPUTS = tuple(
    InputShard("parquet", f"part-{i}.parquet", 1000 + i, f"v{i}", BOUNDS[i], BOUNDS[i + 1]) for i in range(3)
)


def make_spec(**changes: object) -> RunSpec:
    fields: dict[str, object] = {
        "model_id": "tiny",
        "site": "resid:1",
        "preprocess": "resize 32",
        "dataset_id": "toy",
        "inputs": INPUTS,
        "rows_per_shard": 4,
        "job": {"batch_size": 4},
    }
    return RunSpec(**{**fields, **changes})  # type: ignore[arg-type]


def activation(key: str) -> torch.Tensor:
    """A deterministic row per key, so any misplaced or duplicated row shows."""
    index = int(key.split("_")[1])
    return torch.arange(WIDTH, dtype=torch.float32) + index * 10


def write_part(writer: ActivationWriter, input_shard: int, part: int) -> ShardInfo:
    chunk = KEYS[BOUNDS[input_shard] : BOUNDS[input_shard + 1]][part * 4 : (part + 1) * 4]
    keys = [k for k in chunk if k not in SKIPPED]
    rows = torch.stack([activation(k) for k in keys])
    skipped = {k: SKIPPED[k] for k in chunk if k in SKIPPED}
    return writer.write_part(input_shard, part, keys, rows, labels=[k[-1] for k in keys], skipped=skipped)


def write_input_shard(writer: ActivationWriter, input_shard: int) -> None:
    parts = -(-(BOUNDS[input_shard + 1] - BOUNDS[input_shard]) // 4)
    writer.finish_input_shard(input_shard, [write_part(writer, input_shard, p) for p in range(parts)])


def write_run(store: ObjectStore) -> str:
    writer = ActivationWriter(store, make_spec())
    for input_shard in writer.pending_input_shards():
        write_input_shard(writer, input_shard)
    writer.commit()
    return writer.run_id


def expected_keys() -> list[str]:
    return [k for k in KEYS if k not in SKIPPED]


def test_run_id_depends_on_every_identity_field() -> None:
    base = make_spec()
    assert base.run_id == run_id("tiny", "resid:1", "resize 32", "toy", INPUTS)
    assert len(base.run_id) == 16
    assert make_spec(job={"other": 1}, rows_per_shard=9).run_id == base.run_id
    changed = INPUTS[:2]
    variants = [
        make_spec(model_id="other"),
        make_spec(site="resid:0"),
        make_spec(preprocess="resize 64"),
        make_spec(dataset_id="toy2"),
        make_spec(inputs=changed),
        make_spec(inputs=(*changed, replace(INPUTS[2], version="v9"))),
        make_spec(inputs=(*changed, replace(INPUTS[2], size=5))),
        make_spec(inputs=(*changed, replace(INPUTS[2], name="other.parquet"))),
        make_spec(inputs=(*changed, replace(INPUTS[2], stop=22))),
    ]
    assert len({v.run_id for v in variants} | {base.run_id}) == 10


def test_committed_run_reads_back_every_way(store: ObjectStore) -> None:
    run = ActivationRun(store, write_run(store))
    expected = torch.stack([activation(k) for k in expected_keys()]).half()
    assert run.num_rows == len(expected_keys()) and run.row_shape == (WIDTH,)
    assert run.keys() == expected_keys()
    assert run.labels() == [k[-1] for k in expected_keys()]
    assert run.manifest.skipped == SKIPPED
    assert run.manifest.spec["job"] == {"batch_size": 4}
    assert [s.rows for s in run.manifest.shards] == [4, 3, 2, 4, 3, 3, 2]
    assert [(s.input_shard, s.part) for s in run.manifest.shards] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]
    assert run.shard_keys(1)[0] == ["img_005", "img_006", "img_007"]
    assert torch.equal(run.shard(1), expected[4:7])
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
    spec = make_spec(site="resid:1:patches", inputs=INPUTS[:1], rows_per_shard=2)
    writer = ActivationWriter(store, spec)
    parts = [
        writer.write_part(0, p, list(KEYS[2 * p : 2 * p + 2]), torch.randn(2, 3, WIDTH)) for p in range(2)
    ]
    writer.finish_input_shard(0, parts)
    writer.commit()
    run = ActivationRun(store, spec.run_id)
    assert run.row_shape == (3, WIDTH) and run.load_all().shape == (4, 3, WIDTH)
    batches = list(run.training_batches(batch_size=5, buffer_rows=5))
    assert [b.shape for b in batches] == [(5, WIDTH), (5, WIDTH), (2, WIDTH)]


def test_keys_need_to_be_unique_only_within_an_input_shard(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    spec = make_spec(inputs=INPUTS[:2])
    writer = ActivationWriter(store, spec)
    for input_shard in range(2):
        rows = torch.full((2, WIDTH), float(input_shard))
        writer.finish_input_shard(
            input_shard, [writer.write_part(input_shard, 0, ["same", f"own{input_shard}"], rows)]
        )
    writer.commit()
    run = ActivationRun(store, spec.run_id)
    assert run.keys() == ["same", "own0", "same", "own1"]
    assert torch.equal(run.row("own1"), torch.ones(WIDTH, dtype=torch.float16))
    with pytest.raises(InvalidInputError, match="rows for input 'same' in several input shards"):
        run.row("same")


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
    for input_shard in (0, 2):
        write_input_shard(first, input_shard)
    # a worker died half-way through input shard 1: its first part landed, the done marker did not
    write_part(first, 1, 0)
    with pytest.raises(RunIncompleteError, match=r"1 of 3 input shards not written \(1\)"):
        first.commit()
    with pytest.raises(RunNotCommittedError, match="not committed"):
        ActivationRun(store, spec.run_id)

    rerun = ActivationWriter(store, spec)
    assert rerun.pending_input_shards() == [1]
    done = {i: rerun.written(i) for i in (0, 2)}
    write_input_shard(rerun, 1)
    assert rerun.pending_input_shards() == []
    assert {i: rerun.written(i) for i in (0, 2)} == done
    rerun.commit()
    run = ActivationRun(store, spec.run_id)
    assert run.keys() == expected_keys()
    assert torch.equal(run.load_all(), torch.stack([activation(k) for k in expected_keys()]).half())


def test_writer_rejects_parts_that_do_not_fit(tmp_path: Path) -> None:
    writer = ActivationWriter(LocalStore(tmp_path), make_spec())
    keys = list(KEYS[:4])
    with pytest.raises(InvalidInputError, match=r"a part holds 1..4 inputs \(written or skipped\), got 5"):
        writer.write_part(0, 0, keys, torch.zeros(4, WIDTH), skipped={"img_009": "empty"})
    with pytest.raises(InvalidInputError, match="input keys must be distinct"):
        writer.write_part(0, 0, keys[:3], torch.zeros(3, WIDTH), skipped={keys[0]: "empty"})
    with pytest.raises(InvalidInputError, match=r"rows = 4 keys, got \(3, 6\)"):
        writer.write_part(0, 0, keys, torch.zeros(3, WIDTH))
    with pytest.raises(InvalidInputError, match="input shard 3 out of range: the run has 3 input shards"):
        writer.write_part(3, 0, keys, torch.zeros(4, WIDTH))
    parts = [write_part(writer, 0, p) for p in range(3)]
    with pytest.raises(InvalidInputError, match=r"parts must be its parts 0..2 in order"):
        writer.finish_input_shard(0, parts[::-1])
    with pytest.raises(InvalidInputError, match=r"parts must be its parts 0..2 in order"):
        writer.finish_input_shard(1, parts)
    assert writer.pending_input_shards() == [0, 1, 2]


def test_corrupted_shard_fails_its_checksum(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    run_key = write_run(store)
    path = tmp_path / run_prefix(run_key) / f"{part_stem(0, 1)}.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match="shard shards/shard-000000-0001 does not match its sha256"):
        ActivationRun(store, run_key).load_all()
