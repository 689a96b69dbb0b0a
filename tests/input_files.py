"""Input files for the reader and extract tests: WebDataset tars and parquet files of given rows."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_tar(path: Path, members: Mapping[str, bytes]) -> Path:
    """A tar at ``path`` holding ``members`` (name -> bytes) in the given order."""
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_parquet(
    path: Path,
    keys: Sequence[str],
    images: Sequence[bytes],
    labels: Sequence[str | None],
    row_group_size: int,
) -> Path:
    """A parquet of ``key``, ``jpg``, ``label`` columns in row groups of ``row_group_size`` rows."""
    table = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "jpg": pa.array(images, pa.binary()),
            "label": pa.array(labels, pa.string()),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path
