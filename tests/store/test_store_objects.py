"""The object-store contract, run against the local directory and the S3 back end alike."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.store import LocalStore, ObjectStore, S3Config, S3Store, StoreAccessError, open_store
from cliplens.store.objects import TEMP_MARKER


def test_put_get_exists_delete(store: ObjectStore) -> None:
    store.put_bytes("a/b/one.bin", b"first")
    store.put_bytes("a/b/one.bin", b"second")
    assert store.get_bytes("a/b/one.bin") == b"second"
    assert store.exists("a/b/one.bin") and not store.exists("a/b/two.bin")
    store.delete("a/b/one.bin")
    store.delete("a/b/one.bin")
    assert not store.exists("a/b/one.bin")
    with pytest.raises(NotFoundError, match=r"one\.bin"):
        store.get_bytes("a/b/one.bin")


def test_list_is_a_sorted_string_prefix_match(store: ObjectStore) -> None:
    for key in ["x/shard-2", "x/shard-1", "x/other", "y/shard-1", "top"]:
        store.put_bytes(key, key.encode())
    assert store.list("x/shard-") == ["x/shard-1", "x/shard-2"]
    assert store.list("x/") == ["x/other", "x/shard-1", "x/shard-2"]
    assert store.list() == ["top", "x/other", "x/shard-1", "x/shard-2", "y/shard-1"]
    assert store.list("missing/") == []


def test_child_store_sees_keys_relative_to_its_prefix(store: ObjectStore) -> None:
    child = store.child("runs/abc")
    child.put_bytes("manifest.json", b"{}")
    assert store.get_bytes("runs/abc/manifest.json") == b"{}"
    assert child.list() == ["manifest.json"]


def test_large_file_round_trips_through_multipart_upload(store: ObjectStore, tmp_path: Path) -> None:
    payload = os.urandom(11 * 1024 * 1024)  # more than two 5 MiB parts on S3
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    store.put_file("big/file.bin", source)
    store.put_bytes("big/bytes.bin", payload)
    assert store.get_bytes("big/file.bin") == payload
    assert store.get_bytes("big/bytes.bin") == payload


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/./b"])
def test_bad_keys_are_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid object key"):
        store.put_bytes(key, b"x")


def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("d/f.bin", b"data")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["f.bin"]
    (tmp_path / "d" / f".g.bin{TEMP_MARKER}123").write_bytes(b"half-written")
    assert store.list() == ["d/f.bin"]


def test_wrong_credentials_are_rejected_clearly(s3_config: S3Config) -> None:
    wrong = S3Config(s3_config.endpoint, s3_config.access_key, "not-the-secret", secure=False)
    with pytest.raises(StoreAccessError, match="rejected access"):
        S3Store("cliplens-ready", "", wrong)


def test_open_store_picks_the_back_end(tmp_path: Path, s3_config: S3Config) -> None:
    assert isinstance(open_store(tmp_path / "here"), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    s3 = open_store("s3://picked/some/prefix", s3_config)
    assert isinstance(s3, S3Store) and s3.uri == "s3://picked/some/prefix/"
    with pytest.raises(InvalidInputError, match="unsupported store URI"):
        open_store("gs://bucket/x")


@pytest.mark.parametrize("bucket", ["", "b", "Upper_Case", "two..dots"])
def test_invalid_bucket_names_are_named_before_any_request(bucket: str) -> None:
    unreachable = S3Config(endpoint="127.0.0.1:9", access_key="a", secret_key="b")
    with pytest.raises(InvalidInputError, match=f"invalid S3 bucket name '{bucket}'"):
        open_store(f"s3://{bucket}/prefix", unreachable)


def test_s3_config_from_environment() -> None:
    config = S3Config.from_env(
        {
            "CLIPLENS_S3_ENDPOINT": "http://minio.local:9000",
            "CLIPLENS_S3_ACCESS_KEY": "ak",
            "CLIPLENS_S3_SECRET_KEY": "sk",
            "CLIPLENS_S3_REGION": "eu-1",
        }
    )
    assert config == S3Config("minio.local:9000", "ak", "sk", secure=False, region="eu-1")
    assert S3Config.from_env({"CLIPLENS_S3_ENDPOINT": "s3.local", "CLIPLENS_S3_SECURE": "true"}).secure
    with pytest.raises(InvalidInputError, match="CLIPLENS_S3_ENDPOINT"):
        S3Config.from_env({})
    with pytest.raises(InvalidInputError, match="CLIPLENS_S3_SECURE"):
        S3Config.from_env({"CLIPLENS_S3_ENDPOINT": "s3.local", "CLIPLENS_S3_SECURE": "maybe"})
