"""Input shards: each format listed from metadata (local and S3 with ETags), read back shard by
shard, checked against the listing; and the run id they give."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cliplens.core.errors import InvalidInputError
from cliplens.store import (
    InputShard,
    InputSource,
    Record,
    RunSpec,
    S3Config,
    list_input_shards,
    open_inputs,
    read_input_shard,
    read_inputs,
)
from fixtures_servers import s3_store
from image_bytes import png
from input_files import write_parquet, write_tar

IMAGES = [png(4 + i % 5) for i in range(12)]


def make_inputs(root: Path) -> None:
    """A parquet of 5 row groups (50 rows), two tars, and a folder of 7 images in class folders."""
    keys = [f"p{i:03d}" for i in range(50)]
    (root / "parquet").mkdir()
    write_parquet(
        root / "parquet" / "big.parquet",
        keys,
        [IMAGES[i % 12] for i in range(50)],
        [str(i % 3) for i in range(50)],
        10,
    )
    (root / "wds").mkdir()
    write_tar(root / "wds" / "000.tar", {"a.png": IMAGES[0], "a.cls": b"1", "b.png": IMAGES[1]})
    write_tar(root / "wds" / "001.tar", {"c.png": IMAGES[2]})
    for i, name in enumerate(
        ["cat/x1.png", "cat/x2.png", "dog/y1.png", "dog/y2.png", "dog/y3.png", "z1.png", "z2.png"]
    ):
        (root / "folder" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "folder" / name).write_bytes(IMAGES[i])
    (root / "folder" / "notes.txt").write_text("not an image")


def shards_and_records(source: InputSource, shard_rows: int) -> list[tuple[InputShard, list[Record]]]:
    return [(s, list(read_input_shard(source, s))) for s in list_input_shards(source, shard_rows)]


def test_each_format_lists_into_input_shards_that_read_back_every_record(tmp_path: Path) -> None:
    make_inputs(tmp_path)
    parquet = shards_and_records(open_inputs(tmp_path / "parquet", "parquet"), 20)
    assert [(s.name, s.start, s.stop) for s, _ in parquet] == [
        ("big.parquet", 0, 20),
        ("big.parquet", 20, 40),
        ("big.parquet", 40, 50),
    ]
    assert [r.key for _, records in parquet for r in records] == [f"p{i:03d}" for i in range(50)]
    assert [len(records) for _, records in parquet] == [s.rows for s, _ in parquet] == [20, 20, 10]
    assert {s.size for s, _ in parquet} == {(tmp_path / "parquet" / "big.parquet").stat().st_size}

    tars = shards_and_records(open_inputs(tmp_path / "wds", "webdataset"), 20)
    assert [(s.name, s.rows, [r.key for r in records]) for s, records in tars] == [
        ("000.tar", None, ["a", "b"]),
        ("001.tar", None, ["c"]),
    ]
    assert tars[0][1][0] == Record("a", IMAGES[0], "1")
    assert [s.version for s, _ in tars] == [
        str((tmp_path / "wds" / n).stat().st_mtime_ns) for n in ("000.tar", "001.tar")
    ]

    folder = shards_and_records(open_inputs(tmp_path / "folder"), 3)
    assert [(s.name, s.last, s.after, s.start, s.stop) for s, _ in folder] == [
        ("cat/x1.png", "dog/y1.png", "", 0, 3),
        ("dog/y2.png", "z1.png", "dog/y1.png", 3, 6),
        ("z2.png", "z2.png", "z1.png", 6, 7),
    ]
    assert [(r.key, r.label) for _, records in folder for r in records] == [
        ("cat/x1", "cat"),
        ("cat/x2", "cat"),
        ("dog/y1", "dog"),
        ("dog/y2", "dog"),
        ("dog/y3", "dog"),
        ("z1", None),
        ("z2", None),
    ]
    assert folder[1][0].size == sum(len(IMAGES[i]) for i in (3, 4, 5))
    assert [r for _, records in folder for r in records] == list(read_inputs(tmp_path / "folder"))


def test_s3_listing_carries_etags_and_reads_the_same_records(tmp_path: Path, s3_config: S3Config) -> None:
    make_inputs(tmp_path)
    bucket = s3_store(s3_config)
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file():
            bucket.put_file(path.relative_to(tmp_path).as_posix(), path)
    root = f"s3://{bucket.bucket}/{bucket.prefix}"
    for name, fmt, rows in (("parquet", "parquet", 20), ("wds", "webdataset", 20), ("folder", None, 3)):
        local = shards_and_records(open_inputs(tmp_path / name, fmt), rows)
        remote = shards_and_records(open_inputs(root + name, fmt, s3_config), rows)
        assert [records for _, records in remote] == [records for _, records in local], name
        assert [(s.name, s.size, s.start, s.stop) for s, _ in remote] == [
            (s.name, s.size, s.start, s.stop) for s, _ in local
        ]
    tars = list(list_input_shards(open_inputs(root + "wds", "webdataset", s3_config)))
    md5 = [hashlib.md5((tmp_path / "wds" / n).read_bytes()).hexdigest() for n in ("000.tar", "001.tar")]
    assert [s.version.strip('"') for s in tars] == md5  # single-part uploads: the ETag is the MD5


def spec_of(source: InputSource, **changes: object) -> RunSpec:
    fields: dict[str, object] = {
        "model_id": "demo",
        "site": "final",
        "preprocess": "resize 32",
        "dataset_id": "toy",
        "inputs": tuple(list_input_shards(source, 3)),
        "rows_per_shard": 2,
    }
    return RunSpec(**{**fields, **changes})  # type: ignore[arg-type]


def test_run_id_changes_when_an_input_shard_changes_and_not_otherwise(tmp_path: Path) -> None:
    make_inputs(tmp_path)
    wds, folder = open_inputs(tmp_path / "wds", "webdataset"), open_inputs(tmp_path / "folder")
    base = spec_of(wds)
    assert spec_of(wds).run_id == base.run_id
    assert spec_of(wds, rows_per_shard=7, job={"batch_size": 1}).run_id == base.run_id
    assert base.to_dict()["input_shards"] == 2
    tar = tmp_path / "wds" / "001.tar"
    stat = tar.stat()
    os.utime(tar, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched: a new version
    touched = spec_of(wds)
    write_tar(tar, {"c.png": IMAGES[3]})  # rewritten: another size
    rewritten = spec_of(wds)
    write_tar(tmp_path / "wds" / "002.tar", {"d.png": IMAGES[4]})
    added = spec_of(wds)
    assert len({base.run_id, touched.run_id, rewritten.run_id, added.run_id}) == 4

    chunks = spec_of(folder)
    (tmp_path / "folder" / "notes.txt").write_text("still not an image, and not an input")
    assert spec_of(folder).run_id == chunks.run_id
    (tmp_path / "folder" / "dog" / "y0.png").write_bytes(IMAGES[8])  # a new file moves the chunks
    assert spec_of(folder).run_id != chunks.run_id
    assert spec_of(folder, inputs=chunks.inputs).run_id == chunks.run_id


def test_an_input_shard_that_changed_since_listing_is_an_error_naming_it(tmp_path: Path) -> None:
    make_inputs(tmp_path)
    wds, folder = open_inputs(tmp_path / "wds", "webdataset"), open_inputs(tmp_path / "folder")
    tar = list(list_input_shards(wds))[1]
    chunk = list(list_input_shards(folder, 3))[1]
    write_tar(tmp_path / "wds" / "001.tar", {"c.png": IMAGES[5]})
    with pytest.raises(InvalidInputError, match=r"input shard tar 001.tar changed since it was listed"):
        list(read_input_shard(wds, tar))
    (tmp_path / "folder" / "dog" / "y2.png").write_bytes(IMAGES[11])
    with pytest.raises(
        InvalidInputError, match=r"image files dog/y2.png .. z1.png changed since it was listed"
    ):
        list(read_input_shard(folder, chunk))
    write_tar(tmp_path / "wds" / "twice.tar", {"k.png": IMAGES[0], "j.png": IMAGES[1], "k.jpg": IMAGES[2]})
    with pytest.raises(InvalidInputError, match=r"input shard tar twice.tar holds the key 'k' twice"):
        list(read_inputs(tmp_path / "wds" / "twice.tar"))
