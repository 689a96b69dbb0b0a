"""CIFAR-10 inputs of the benchmarks: the shipped sample by default, a CIFAR-10 folder with ``--data``.

The sample (``services/cliplens/assets/demo/cifar10-test-sample.parquet``) is the test split's first
2,000 images. ``--data DIR`` names a folder with the full splits, ``cifar10-test.parquet`` (10,000
rows) and, where a benchmark trains on the train split, ``cifar10-train.parquet`` (50,000 rows), each
with columns ``key`` (string), ``jpg`` (JPEG bytes) and ``label`` (int, the CIFAR-10 class index).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow as pa

from cliplens.store.sample import SAMPLE_PARQUET

TEST_FILE, TRAIN_FILE = "cifar10-test.parquet", "cifar10-train.parquet"
DATA_HELP = "a CIFAR-10 folder holding cifar10-test.parquet{train} (columns key, jpg, label){default}"


def add_data_argument(
    parser: argparse.ArgumentParser, *, train: bool = False, required: bool = False
) -> None:
    """``--data DIR``; without it the benchmark uses the shipped sample (unless ``required``)."""
    parser.add_argument(
        "--data",
        type=Path,
        required=required,
        metavar="DIR",
        help=DATA_HELP.format(
            train=" and cifar10-train.parquet" if train else "",
            default="" if required else f"; default: the shipped 2,000-image sample {SAMPLE_PARQUET.name}",
        ),
    )


def split_file(data: Path, name: str) -> Path:
    """``data / name``, or exit with a message naming what is missing."""
    path = data / name
    if not path.is_file():
        sys.exit(f"--data {data}: no {name} there (expected a CIFAR-10 folder: {TEST_FILE}, {TRAIN_FILE})")
    return path


def test_parquet(data: Path | None) -> Path:
    """The test images: ``--data``'s test split, else the shipped sample."""
    return SAMPLE_PARQUET if data is None else split_file(data, TEST_FILE)


def data_flag(data: Path | None) -> str:
    """`` --data DIR`` as given, for the command line recorded with the results ("" for the sample)."""
    return "" if data is None else f" --data {data}"


def first_rows(table: pa.Table, count: int, source: Path, *, what: str) -> pa.Table:
    """The first ``count`` rows; fewer, with a message on stderr, when ``source`` has fewer."""
    if count > table.num_rows:
        print(
            f"{what}: {source} has {table.num_rows} images, not {count}; using {table.num_rows} "
            "(pass --data with the full CIFAR-10 test split for more)",
            file=sys.stderr,
        )
    return table.slice(0, count)


def tiled_rows(table: pa.Table, count: int) -> pa.Table:
    """The first ``count`` rows, repeating the table when it is shorter; repeats get keys ``<key>~<n>``."""
    if table.num_rows == 0:
        raise ValueError("no rows to repeat")
    parts, copy = [], 0
    while sum(part.num_rows for part in parts) < count:
        part = table
        if copy:
            keys = pa.array([f"{key}~{copy}" for key in table.column("key").to_pylist()], pa.string())
            part = table.set_column(table.schema.get_field_index("key"), "key", keys)
        parts.append(part)
        copy += 1
    return pa.concat_tables(parts).slice(0, count)
