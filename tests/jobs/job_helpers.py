"""Helpers of the job tests: CIFAR-10 subsets as parquet and the in-process reference forward."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import torch
from torch import Tensor

from cliplens.core.models import LoadedClip
from cliplens.core.sites import encode_images
from cliplens.jobs.extract import ExtractConfig, run_extract
from cliplens.store.decoding import decode_image
from cliplens.store.objects import LocalStore


def cifar_subset(
    parquet: Path, directory: Path, rows: int, offset: int = 0, row_group_size: int | None = None
) -> Path:
    """The first ``rows`` images of ``parquet`` (after ``offset``) as a parquet file in ``directory``
    (in row groups of ``row_group_size`` rows when given)."""
    path = directory / f"cifar-{offset}-{rows}.parquet"
    table = pq.read_table(parquet).slice(offset, rows)
    assert table.num_rows == rows, f"{parquet} has {offset + table.num_rows} rows, not {offset + rows}"
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def extracted_final_run(
    parquet: Path, directory: Path, images: int, rows_per_shard: int, batch_size: int
) -> tuple[LocalStore, str]:
    """A local store in ``directory`` holding the demo model's final embeddings of the first
    ``images`` images of ``parquet`` (needs Ray), and the run's id."""
    store = LocalStore(directory / "store")
    subset = cifar_subset(parquet, directory, images)
    config = ExtractConfig(inputs=str(subset), rows_per_shard=rows_per_shard, batch_size=batch_size)
    return store, run_extract(config, store).runs["final"]


@torch.no_grad()
def reference_forward(clip: LoadedClip, images: list[bytes], site: str) -> Tensor:
    """``site`` activations of every image, from one in-process loop."""
    pixels = torch.stack([clip.preprocess(decode_image(data)) for data in images])  # type: ignore[arg-type]
    parts = [encode_images(clip.model, pixels[i : i + 64], [site])[site] for i in range(0, len(pixels), 64)]
    return torch.cat(parts).float()


def reference_activations(clip: LoadedClip, parquet: Path, site: str) -> tuple[list[str], Tensor]:
    """Keys and ``site`` activations of every image of ``parquet``, from one in-process loop."""
    table = pq.read_table(parquet, columns=["key", "jpg"])
    keys = [str(k) for k in table.column("key").to_pylist()]
    return keys, reference_forward(clip, table.column("jpg").to_pylist(), site)
