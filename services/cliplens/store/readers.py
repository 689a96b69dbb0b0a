"""Input readers: labelled image records of one input shard (:mod:`cliplens.store.input_shards`).

Every reader takes a local path or an ``s3://bucket/key`` URI (see :mod:`cliplens.store.objects`
for the S3 settings) and yields :class:`Record` in a deterministic order, streaming: a parquet
shard is read row group by row group through ranged reads, a tar front to back, a folder chunk
file by file. Labels are strings (``None`` when absent); the bytes are undecoded (see
:func:`cliplens.store.decoding.decode_image`).

- parquet: columns ``key``, ``jpg`` (image bytes) and ``label``; a file, or a folder/prefix whose
  ``*.parquet`` files are read in name order.
- WebDataset: tar members ``<key>.jpg|jpeg|png|webp`` with an optional ``<key>.cls`` label; a
  ``.tar`` file, or a folder/prefix of them. A key without an image member yields empty bytes.
- image folder: files with an image extension; the key is the path without extension, the label
  the first sub-folder's name (``None`` for files at the top level): a folder-per-class layout
  gives class names.

Keys must be unique within an input shard (a repeated one is an error naming the shard); they may
repeat across shards. An input shard that changed since it was listed (size, version, or a
folder chunk's files) is an error naming it. Labels that are class indices (a parquet ``label``
column, WebDataset ``.cls`` files) become names with a class-names file (:func:`read_class_names`,
one name per line: line ``i`` names class ``i``).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow.parquet as pq

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.store.input_shards import (
    FORMATS,
    PARQUET_COLUMNS,
    InputShard,
    InputSource,
    ListingDigest,
    check_columns,
    is_folder_image,
    list_input_shards,
    open_inputs,
    parquet_row_groups,
)
from cliplens.store.objects import ObjectInfo, S3Config, open_object
from cliplens.store.ranged_file import open_ranged

__all__ = ["FORMATS", "Record", "parquet_records", "read_class_names", "read_input_shard", "read_inputs"]

WDS_IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
PARQUET_BATCH_ROWS = 256


@dataclass(frozen=True)
class Record:
    key: str
    data: bytes
    label: str | None


def read_inputs(
    uri: str | Path,
    fmt: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    s3: S3Config | None = None,
) -> Iterator[Record]:
    """Records of every input shard of ``uri`` in format ``fmt`` (guessed from the suffix when
    ``None``: .parquet, .tar, otherwise a folder); with ``class_names``, index labels become names."""
    source = open_inputs(uri, fmt, s3)
    return (
        record
        for shard in list_input_shards(source)
        for record in read_input_shard(source, shard, class_names)
    )


def read_input_shard(
    source: InputSource, shard: InputShard, class_names: Sequence[str] | None = None
) -> Iterator[Record]:
    """The records of one input shard of ``source``, streamed."""
    if shard.fmt == "folder":
        records = _folder_records(source, shard)
    else:
        info = source.store.stat(shard.name)
        if (info.size, info.version) != (shard.size, shard.version):
            raise InvalidInputError(
                f"input shard {shard.describe()} changed since it was listed (size {info.size}, version "
                f"{info.version}; listed {shard.size}, {shard.version}): run the job again to list it anew"
            )
        records = (
            _parquet_shard_records(source, info, shard)
            if shard.fmt == "parquet"
            else _tar_records(source, info)
        )
    seen: set[str] = set()
    for record in records:
        if record.key in seen:
            raise InvalidInputError(f"input shard {shard.describe()} holds the key '{record.key}' twice")
        seen.add(record.key)
        yield record if class_names is None else _named(record, class_names)


def parquet_records(data: bytes, name: str) -> Iterator[Record]:
    """Records from the bytes of one parquet file; ``name`` names it in errors."""
    parquet = _open_parquet(io.BytesIO(data), name)
    yield from _parquet_rows(parquet, list(range(parquet.metadata.num_row_groups)))


def read_class_names(uri: str | Path, *, s3: S3Config | None = None) -> list[str]:
    """Class names, one per line (line ``i`` names class index ``i``); a local path or ``s3://`` URI."""
    store, key = open_object(uri, s3)
    if not store.exists(key):
        raise NotFoundError(f"class-names file {uri} not found")
    names = [line.strip() for line in store.get_bytes(key).decode("utf-8").splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise InvalidInputError(f"class-names file {uri} is empty: give one class name per line")
    blank = [i for i, name in enumerate(names) if not name]
    if blank:
        raise InvalidInputError(f"class-names file {uri} has blank lines (class indices {blank[:10]})")
    return names


def _named(record: Record, class_names: Sequence[str]) -> Record:
    if not record.label:  # unlabelled
        return record
    index = int(record.label) if record.label.strip().lstrip("-").isdigit() else None
    if index is None or not 0 <= index < len(class_names):
        raise InvalidInputError(
            f"label '{record.label}' of input {record.key} is not a class index in 0..{len(class_names) - 1}, "
            f"so the {len(class_names)} class names cannot name it"
        )
    return replace(record, label=class_names[index])


def _open_parquet(handle: io.IOBase, name: str) -> pq.ParquetFile:
    try:
        parquet = pq.ParquetFile(handle)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InvalidInputError(f"{name} is not a readable parquet file: {exc}") from None
    check_columns(parquet, name)
    return parquet


def _parquet_shard_records(source: InputSource, info: ObjectInfo, shard: InputShard) -> Iterator[Record]:
    parquet = _open_parquet(open_ranged(source.store, info), shard.name)
    yield from _parquet_rows(parquet, parquet_row_groups(parquet, shard))


def _parquet_rows(parquet: pq.ParquetFile, row_groups: list[int]) -> Iterator[Record]:
    key_column, image_column, label_column = PARQUET_COLUMNS
    for batch in parquet.iter_batches(PARQUET_BATCH_ROWS, row_groups, list(PARQUET_COLUMNS)):
        keys, images = batch.column(key_column).to_pylist(), batch.column(image_column).to_pylist()
        labels = batch.column(label_column).to_pylist()
        for k, image, label in zip(keys, images, labels, strict=True):
            yield Record(str(k), image or b"", None if label is None else str(label))


def _folder_records(source: InputSource, shard: InputShard) -> Iterator[Record]:
    """The chunk's files, listed again from the key before it and checked against the listing."""
    infos: list[ObjectInfo] = []
    digest = ListingDigest()
    for info in source.store.scan("", shard.after):
        if is_folder_image(info.key):
            infos.append(info)
            digest.add(info)
        if info.key >= shard.last:
            break
    if not infos or infos[0].key != shard.name or digest.hexdigest() != shard.version:
        raise InvalidInputError(
            f"input shard {shard.describe()} changed since it was listed (files added, removed or "
            "rewritten): run the job again to list it anew"
        )
    for info in infos:
        folder, _, _ = info.key.rpartition("/")
        yield Record(
            info.key.rsplit(".", 1)[0], source.store.get_bytes(info.key), folder.split("/")[0] or None
        )


def _tar_records(source: InputSource, info: ObjectInfo) -> Iterator[Record]:
    current: str | None = None
    image, label = b"", None
    try:
        with tarfile.open(fileobj=open_ranged(source.store, info), mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                directory, _, base = member.name.rpartition("/")
                stem, _, suffix = base.partition(".")
                key = f"{directory}/{stem}" if directory else stem
                if key != current:
                    if current is not None:
                        yield Record(current, image, label)
                    current, image, label = key, b"", None
                handle = tar.extractfile(member)
                content = handle.read() if handle is not None else b""
                if suffix.lower() in WDS_IMAGE_SUFFIXES:
                    image = content
                elif suffix.lower() == "cls":
                    label = content.decode("utf-8", errors="replace").strip()
    except tarfile.TarError as exc:
        raise InvalidInputError(f"WebDataset shard {info.key} is not a readable tar file: {exc}") from None
    if current is not None:
        yield Record(current, image, label)
