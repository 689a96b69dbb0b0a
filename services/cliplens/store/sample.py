"""The labelled CIFAR-10 sample that ships with cliplens (2,000 test-split images) and its loader.

Its labels index :data:`cliplens.core.prompts.CIFAR10_CLASSES` (the class-names file
:data:`cliplens.core.prompts.CIFAR10_CLASSES_FILE`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import torch
from PIL import Image

from cliplens.core.models import ASSETS_DIR

SAMPLE_PARQUET = ASSETS_DIR / "demo" / "cifar10-test-sample.parquet"


@dataclass
class LabelledImages:
    keys: list[str]
    images: list[Image.Image]
    labels: torch.Tensor


def load_labelled_parquet(path: str | Path = SAMPLE_PARQUET, limit: int | None = None) -> LabelledImages:
    """Read a parquet file with ``key``, ``jpg`` (encoded image bytes) and ``label`` columns."""
    table = pq.read_table(path, columns=["key", "jpg", "label"])
    if limit is not None:
        table = table.slice(0, limit)
    images = [Image.open(io.BytesIO(raw)).convert("RGB") for raw in table.column("jpg").to_pylist()]
    labels = torch.tensor(table.column("label").to_numpy(), dtype=torch.int64)
    return LabelledImages([str(k) for k in table.column("key").to_pylist()], images, labels)
