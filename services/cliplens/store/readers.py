"""Input readers: labelled image records from parquet, WebDataset tar shards or image folders.

Every reader takes a local path or an ``s3://bucket/key`` URI (see :mod:`cliplens.store.objects`
for the S3 settings) and yields :class:`Record` in a deterministic order. Labels are strings
(``None`` when absent); the bytes are undecoded (see :func:`cliplens.store.decoding.decode_image`).

- parquet: columns ``key``, ``jpg`` (image bytes) and ``label`` (names configurable); a file,
  or a folder/prefix whose ``*.parquet`` files are read in name order.
- WebDataset: tar members ``<key>.jpg|jpeg|png|webp`` with an optional ``<key>.cls`` label; a
  ``.tar`` file, or a folder/prefix of them. A key without an image member yields empty bytes.
- image folder: files with an image extension; the key is the path without extension, the label
  the first sub-folder's name (``None`` for files at the top level): a folder-per-class layout
  gives class names.

Labels that are class indices (a parquet ``label`` column, WebDataset ``.cls`` files) become names
with a class-names file (:func:`read_class_names`, one name per line: line ``i`` names class ``i``).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow.parquet as pq

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.store.objects import ObjectStore, S3Config, open_object

WDS_IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
FOLDER_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
FORMATS = ("parquet", "webdataset", "folder")


@dataclass(frozen=True)
class Record:
    key: str
    data: bytes
    label: str | None


def read_parquet(
    uri: str | Path,
    *,
    key_column: str = "key",
    image_column: str = "jpg",
    label_column: str | None = "label",
    s3: S3Config | None = None,
) -> Iterator[Record]:
    """Records from parquet file(s) with image bytes and labels."""
    store, key = open_object(uri, s3)
    for name in _files(store, key, (".parquet",), uri):
        yield from parquet_records(
            store.get_bytes(name),
            name,
            key_column=key_column,
            image_column=image_column,
            label_column=label_column,
        )


def parquet_records(
    data: bytes,
    name: str,
    *,
    key_column: str = "key",
    image_column: str = "jpg",
    label_column: str | None = "label",
) -> Iterator[Record]:
    """Records from the bytes of one parquet file; ``name`` names it in errors."""
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InvalidInputError(f"{name} is not a readable parquet file: {exc}") from None
    columns = [key_column, image_column, *([label_column] if label_column else [])]
    missing = set(columns) - set(parquet.schema_arrow.names)
    if missing:
        raise InvalidInputError(
            f"parquet {name} has no column(s) {sorted(missing)}; it has {parquet.schema_arrow.names}"
        )
    for batch in parquet.iter_batches(batch_size=1024, columns=columns):
        keys, images = batch.column(key_column).to_pylist(), batch.column(image_column).to_pylist()
        labels = batch.column(label_column).to_pylist() if label_column else [None] * len(keys)
        for k, image, label in zip(keys, images, labels, strict=True):
            yield Record(str(k), image or b"", None if label is None else str(label))


def read_webdataset(uri: str | Path, *, s3: S3Config | None = None) -> Iterator[Record]:
    """Records from WebDataset tar shard(s)."""
    store, key = open_object(uri, s3)
    for name in _files(store, key, (".tar",), uri):
        yield from _tar_records(store.get_bytes(name), name)


def read_image_folder(uri: str | Path, *, s3: S3Config | None = None) -> Iterator[Record]:
    """Records from a folder (or S3 prefix) of image files."""
    store, key = open_object(uri, s3)
    prefix = key.rstrip("/") + "/" if key else ""
    names = [n for n in store.list(prefix) if n.lower().endswith(FOLDER_IMAGE_SUFFIXES)]
    if not names:
        raise NotFoundError(f"no image files ({', '.join(FOLDER_IMAGE_SUFFIXES)}) under {uri}")
    for name in names:
        relative = name[len(prefix) :]
        folder, _, _ = relative.rpartition("/")
        yield Record(relative.rsplit(".", 1)[0], store.get_bytes(name), folder.split("/")[0] or None)


def read_inputs(
    uri: str | Path,
    fmt: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    s3: S3Config | None = None,
) -> Iterator[Record]:
    """Records from ``uri`` in format ``fmt`` (guessed from the suffix when ``None``: .parquet,
    .tar, otherwise a folder); with ``class_names``, index labels become those names."""
    text = str(uri).rstrip("/")
    fmt = fmt or (
        "parquet" if text.endswith(".parquet") else "webdataset" if text.endswith(".tar") else "folder"
    )
    if fmt == "parquet":
        records = read_parquet(uri, s3=s3)
    elif fmt == "webdataset":
        records = read_webdataset(uri, s3=s3)
    elif fmt == "folder":
        records = read_image_folder(uri, s3=s3)
    else:
        raise InvalidInputError(f"unknown input format '{fmt}'; choose one of {', '.join(FORMATS)}")
    return records if class_names is None else _named(records, class_names)


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


def _named(records: Iterator[Record], class_names: Sequence[str]) -> Iterator[Record]:
    for record in records:
        if not record.label:  # unlabelled
            yield record
            continue
        index = int(record.label) if record.label.strip().lstrip("-").isdigit() else None
        if index is None or not 0 <= index < len(class_names):
            raise InvalidInputError(
                f"label '{record.label}' of input {record.key} is not a class index in 0..{len(class_names) - 1}, "
                f"so the {len(class_names)} class names cannot name it"
            )
        yield replace(record, label=class_names[index])


def _files(store: ObjectStore, key: str, suffixes: tuple[str, ...], uri: str | Path) -> list[str]:
    """``key`` itself when it names one file, else the matching files under it as a folder/prefix."""
    if key.endswith(suffixes) and store.exists(key):
        return [key]
    prefix = key.rstrip("/") + "/" if key else ""
    names = [n for n in store.list(prefix) if n.endswith(suffixes)]
    if not names:
        raise NotFoundError(f"no {' or '.join(suffixes)} files at {uri}")
    return names


def _tar_records(data: bytes, name: str) -> Iterator[Record]:
    current: str | None = None
    image, label = b"", None
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
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
                content = _member_bytes(tar, member)
                if suffix.lower() in WDS_IMAGE_SUFFIXES:
                    image = content
                elif suffix.lower() == "cls":
                    label = content.decode("utf-8", errors="replace").strip()
    except tarfile.TarError as exc:
        raise InvalidInputError(f"WebDataset shard {name} is not a readable tar file: {exc}") from None
    if current is not None:
        yield Record(current, image, label)


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    return handle.read() if handle is not None else b""
