"""Head descriptions and rankings computed once and read back from the store, on labelled parquets."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from cliplens.core.decomposition import describe_heads, rank_heads
from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.models import LoadedClip
from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.store import LocalStore, ObjectStore
from cliplens.store.head_results import (
    describe_heads_cached,
    label_indices,
    open_labelled_parquet,
    rank_heads_cached,
)
from cliplens.store.sample import SAMPLE_PARQUET

POOL = ["a red object", "a blue sky", "an animal", "a vehicle", "a green field", "a dark image"]


def _parquet(rows: int, labels: str = "names", drop: str | None = None) -> bytes:
    """The sample's first ``rows`` rows, labels as CIFAR-10 names, indices or with the column ``drop`` left out."""
    table = pq.read_table(SAMPLE_PARQUET).slice(0, rows)
    if labels == "names":
        names = [CIFAR10_CLASSES[i] for i in table.column("label").to_pylist()]
        table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(names))
    if drop:
        table = table.drop_columns([drop])
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_rank_is_computed_once_then_read(store: ObjectStore, tiny_clip: LoadedClip) -> None:
    store.put_bytes("data/cifar-named.parquet", _parquet(12))
    first = rank_heads_cached(store, tiny_clip, dataset="data/cifar-named.parquet", max_images=10)
    assert not first.cached and store.exists(first.key)
    assert first.key.startswith("heads/cliplens-test-tiny-vit/rank-") and first.key.endswith(".json")
    ranking = first.result
    assert ranking.n_images == 10 and len(ranking.heads) == 8
    assert list(ranking.class_names) == sorted(ranking.class_names)  # the distinct label names, sorted
    again = rank_heads_cached(store, tiny_clip, dataset="data/cifar-named.parquet", max_images=10)
    assert again.cached and again.key == first.key and again.result == ranking
    document = json.loads(store.get_bytes(first.key))
    assert document["kind"] == "rank" and document["inputs"]["images"]["max_images"] == 10
    other = rank_heads_cached(store, tiny_clip, dataset="data/cifar-named.parquet", max_images=8)
    assert not other.cached and other.key != first.key and other.result.n_images == 8


def test_rank_labels_and_the_shipped_sample(tmp_path: Path, tiny_clip: LoadedClip) -> None:
    store = LocalStore(tmp_path)
    sample = rank_heads_cached(store, tiny_clip, max_images=8)
    assert sample.result.class_names == CIFAR10_CLASSES
    labelled = open_labelled_parquet().read(8)
    pixels = [tiny_clip.preprocess(image) for image in labelled.images]
    labels, names = label_indices(labelled, CIFAR10_CLASSES)
    assert sample.result == rank_heads(tiny_clip, torch.stack(pixels), labels, names)
    # Index labels named by a class-names list: the same question as the sample's.
    store.put_bytes("indices.parquet", _parquet(8, labels="indices"))
    named = rank_heads_cached(
        store, tiny_clip, dataset="indices.parquet", class_names=CIFAR10_CLASSES, max_images=8
    )
    assert named.result == sample.result and named.key != sample.key


def test_describe_is_computed_once_then_read(tmp_path: Path, tiny_clip: LoadedClip) -> None:
    store = LocalStore(tmp_path)
    first = describe_heads_cached(store, tiny_clip, pool=POOL, per_head=2, layers=[1], max_images=8)
    assert not first.cached and first.key.startswith("heads/cliplens-test-tiny-vit/describe-")
    assert [(h.layer, h.head) for h in first.result.heads] == [(1, h) for h in range(4)]
    again = describe_heads_cached(store, tiny_clip, pool=POOL, per_head=2, layers=[1, 1], max_images=8)
    assert again.cached and again.key == first.key and again.result == first.result
    pixels = [tiny_clip.preprocess(image) for image in open_labelled_parquet().read(8).images]
    assert first.result == describe_heads(tiny_clip, torch.stack(pixels), POOL, 2, [1])
    every_layer = describe_heads_cached(store, tiny_clip, pool=POOL, per_head=2, layers=[0, 1], max_images=8)
    assert every_layer.key == describe_heads_cached(store, tiny_clip, pool=POOL, per_head=2, max_images=8).key
    assert every_layer.key != first.key
    for changed in ({"pool": POOL[:5]}, {"per_head": 3}):
        assert describe_heads_cached(
            store, tiny_clip, **{"pool": POOL, "per_head": 2, "max_images": 8, **changed}
        ).key not in (
            first.key,
            every_layer.key,
        )
    store.put_bytes(first.key, b"{not json")  # a damaged entry is computed again and replaced
    repaired = describe_heads_cached(store, tiny_clip, pool=POOL, per_head=2, layers=[1], max_images=8)
    assert not repaired.cached and repaired.result == first.result
    assert json.loads(store.get_bytes(first.key))["kind"] == "describe"


def test_bad_datasets_name_the_problem(tmp_path: Path, tiny_clip: LoadedClip) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(NotFoundError, match="dataset 'absent.parquet' not found in the store"):
        rank_heads_cached(store, tiny_clip, dataset="absent.parquet")
    store.put_bytes("unlabelled.parquet", _parquet(4, drop="label"))
    with pytest.raises(
        InvalidInputError, match=r"dataset 'unlabelled.parquet' has no column\(s\) \['label'\]"
    ):
        rank_heads_cached(store, tiny_clip, dataset="unlabelled.parquet")
    store.put_bytes("text.parquet", b"key,jpg,label\n")
    with pytest.raises(InvalidInputError, match="dataset 'text.parquet' is not a readable parquet file"):
        rank_heads_cached(store, tiny_clip, dataset="text.parquet")
    store.put_bytes("indices.parquet", _parquet(4, labels="indices"))
    with pytest.raises(InvalidInputError, match="labels of dataset 'indices.parquet' are class indices"):
        rank_heads_cached(store, tiny_clip, dataset="indices.parquet", max_images=4)
    with pytest.raises(
        InvalidInputError, match=r"label '\d+' of image '.*' in dataset 'indices.parquet' is neither"
    ):
        rank_heads_cached(
            store, tiny_clip, dataset="indices.parquet", class_names=["cat", "dog"], max_images=4
        )
    with pytest.raises(InvalidInputError, match="max_images must be between 1 and 5000, got 0"):
        rank_heads_cached(store, tiny_clip, max_images=0)
    with pytest.raises(InvalidInputError, match="layer 2 is out of range"):
        describe_heads_cached(store, tiny_clip, layers=[2])
    assert not store.list("heads/")
