"""Input shards: a data set listed as the units one read task reads, from metadata alone.

- parquet: each ``*.parquet`` file, or, for a file of more than ``shard_rows`` rows, runs of whole
  row groups of it (row ranges read from the footer; the footer is all the listing reads).
- WebDataset: each ``.tar`` file (its inputs are counted only when it is read).
- image folder: consecutive chunks of ``shard_rows`` image files in key order; the listing streams
  through once and each chunk keeps only its first and last key, its files' total size and a digest
  of their keys, sizes and versions.

An :class:`InputShard` holds its name, size, version (ETag on S3, mtime locally) and row range:
what the activation run id hashes, so a changed input shard makes a new run and a re-run over
unchanged inputs finds its committed work. Keys need to be unique only within an input shard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.store.objects import ObjectInfo, ObjectStore, S3Config, open_object
from cliplens.store.ranged_file import open_ranged

FORMATS = ("parquet", "webdataset", "folder")
FOLDER_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
PARQUET_COLUMNS = ("key", "jpg", "label")
DEFAULT_SHARD_ROWS = 10_000


@dataclass(frozen=True)
class InputShard:
    """One input shard (see the module doc).

    ``name`` is the parquet or tar file's key, or a folder chunk's first image key (``last`` its
    last, ``after`` the key listed before it, empty for the first chunk). Rows ``[start, stop)``
    are a parquet file's rows or a folder's files in key order; ``stop`` is ``None`` for a tar.
    """

    fmt: str
    name: str
    size: int
    version: str
    start: int = 0
    stop: int | None = None
    last: str = ""
    after: str = ""

    @property
    def rows(self) -> int | None:
        """How many inputs it holds, when the listing knows (``None`` for a tar)."""
        return None if self.stop is None else self.stop - self.start

    def describe(self) -> str:
        """The shard in words, for errors and logs."""
        if self.fmt == "folder":
            return f"image files {self.name} .. {self.last}"
        if self.fmt == "parquet":
            return f"parquet {self.name} rows {self.start}..{self.stop}"
        return f"tar {self.name}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class InputSource:
    """Where a data set is: the store rooted at its folder, the file within (empty for the whole
    folder) and the format. Shard names are keys relative to that folder."""

    uri: str
    fmt: str
    store: ObjectStore = field(compare=False, repr=False)
    key: str


def infer_format(uri: str | Path, fmt: str | None = None) -> str:
    """``fmt``, or the format of ``uri`` by its suffix: .parquet, .tar, else a folder."""
    text = str(uri).rstrip("/")
    return fmt or (
        "parquet" if text.endswith(".parquet") else "webdataset" if text.endswith(".tar") else "folder"
    )


def open_inputs(uri: str | Path, fmt: str | None = None, s3: S3Config | None = None) -> InputSource:
    """The data set at ``uri`` in format ``fmt`` (by suffix when ``None``: .parquet, .tar, else a folder)."""
    fmt = infer_format(uri, fmt)
    if fmt not in FORMATS:
        raise InvalidInputError(f"unknown input format '{fmt}'; choose one of {', '.join(FORMATS)}")
    store, key = open_object(uri, s3)
    if key and not (key.endswith((".parquet", ".tar")) and store.exists(key)):
        store, key = store.child(key), ""
    folder, _, name = key.rpartition("/")
    return InputSource(str(uri).rstrip("/"), fmt, store.child(folder) if folder else store, name)


def list_input_shards(source: InputSource, shard_rows: int = DEFAULT_SHARD_ROWS) -> Iterator[InputShard]:
    """``source``'s input shards in key order, streamed; raises when there are none."""
    if shard_rows < 1:
        raise InvalidInputError(f"input shard rows must be at least 1, got {shard_rows}")
    if source.fmt == "folder":
        shards = _folder_chunks(source, shard_rows)
    elif source.fmt == "parquet":
        shards = (s for info in _files(source, ".parquet") for s in _parquet_shards(source, info, shard_rows))
    else:
        shards = (
            InputShard("webdataset", info.key, info.size, info.version) for info in _files(source, ".tar")
        )
    found = False
    for shard in shards:
        found = True
        yield shard
    if not found:
        what = {"folder": f"image files ({', '.join(FOLDER_IMAGE_SUFFIXES)})", "parquet": ".parquet files"}
        raise NotFoundError(f"no {what.get(source.fmt, '.tar files')} at {source.uri}")


def parquet_row_groups(parquet: pq.ParquetFile, shard: InputShard) -> list[int]:
    """The row groups that make up ``shard``'s rows exactly; raises when they do not line up."""
    bounds = [0]
    for index in range(parquet.metadata.num_row_groups):
        bounds.append(bounds[-1] + parquet.metadata.row_group(index).num_rows)
    if shard.start not in bounds or shard.stop not in bounds:
        raise InvalidInputError(
            f"input shard {shard.describe()}: the file's row groups no longer start and end there"
        )
    return [i for i in range(len(bounds) - 1) if shard.start <= bounds[i] and bounds[i + 1] <= shard.stop]


def check_columns(parquet: pq.ParquetFile, name: str, columns: Iterable[str] = PARQUET_COLUMNS) -> None:
    missing = set(columns) - set(parquet.schema_arrow.names)
    if missing:
        raise InvalidInputError(
            f"parquet {name} has no column(s) {sorted(missing)}; it has {parquet.schema_arrow.names}"
        )


class ListingDigest:
    """The running hash of a folder chunk's listing: each file's key, size and version."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, info: ObjectInfo) -> None:
        self._hash.update(f"{info.key}\0{info.size}\0{info.version}\n".encode())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def is_folder_image(key: str) -> bool:
    return key.lower().endswith(FOLDER_IMAGE_SUFFIXES)


def _files(source: InputSource, suffix: str) -> Iterator[ObjectInfo]:
    """The file ``source`` names, else the matching files in its folder, streamed."""
    if source.key:
        yield source.store.stat(source.key)
    else:
        yield from (info for info in source.store.scan() if info.key.endswith(suffix))


def _parquet_shards(source: InputSource, info: ObjectInfo, shard_rows: int) -> Iterator[InputShard]:
    """One shard per run of whole row groups holding at least ``shard_rows`` rows (the last may hold fewer)."""
    try:
        parquet = pq.ParquetFile(open_ranged(source.store, info, buffer_size=64 * 1024))
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InvalidInputError(f"{info.key} is not a readable parquet file: {exc}") from None
    check_columns(parquet, info.key)
    start = row = 0
    for index in range(parquet.metadata.num_row_groups):
        row += parquet.metadata.row_group(index).num_rows
        if row - start >= shard_rows or index == parquet.metadata.num_row_groups - 1:
            yield InputShard("parquet", info.key, info.size, info.version, start, row)
            start = row


def _folder_chunks(source: InputSource, shard_rows: int) -> Iterator[InputShard]:
    images = (info for info in source.store.scan() if is_folder_image(info.key))
    after, start = "", 0
    while True:
        first: ObjectInfo | None = None
        digest, size, count, last = ListingDigest(), 0, 0, ""
        for info in images:
            first = first or info
            digest.add(info)
            size, count, last = size + info.size, count + 1, info.key
            if count == shard_rows:
                break
        if first is None:
            return
        yield InputShard("folder", first.key, size, digest.hexdigest(), start, start + count, last, after)
        after, start = last, start + count
