"""Activation runs: identity (``run_id``), object layout and the manifest.

Layout under ``runs/<run_id>/`` in an object store::

    shards/shard-000000.safetensors   fp16 tensor "activations": (rows, d) or (rows, patches, d)
    shards/shard-000000.keys.parquet  one row per tensor row: key (string), label (string or null)
    shards/shard-000000.done.json     written after the two above: rows, shape, sha256, skipped inputs
    manifest.json                     written last by commit(): the run is readable once it exists

Shard ``i`` covers inputs ``[i * rows_per_shard, (i + 1) * rows_per_shard)`` of the run's key list,
minus the inputs skipped there (undecodable images), so workers write shards independently.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from cliplens.core.errors import InvalidInputError
from cliplens.core.sites import Site

RUNS_PREFIX = "runs"
MANIFEST_FILE = "manifest.json"
TENSOR_NAME = "activations"
FORMAT_VERSION = 1
RUN_ID_LENGTH = 16


@dataclass(frozen=True)
class RunSpec:
    """What an activation run extracts; everything that changes the tensors is part of ``run_id``.

    ``preprocess`` describes the image preprocessing (e.g. ``str(clip.preprocess)``); ``keys`` is
    the dataset's ordered input list. ``job`` is extra configuration recorded in the manifest only.
    """

    model_id: str
    site: str
    preprocess: str
    dataset_id: str
    keys: tuple[str, ...]
    rows_per_shard: int = 4096
    job: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        object.__setattr__(self, "site", str(Site.parse(self.site)))
        if not self.keys:
            raise InvalidInputError("an activation run needs at least one input key")
        if len(set(self.keys)) != len(self.keys):
            raise InvalidInputError("input keys of an activation run must be unique")
        if self.rows_per_shard < 1:
            raise InvalidInputError(f"rows_per_shard must be at least 1, got {self.rows_per_shard}")

    @property
    def run_id(self) -> str:
        return run_id(self.model_id, self.site, self.preprocess, self.dataset_id, self.keys)

    @property
    def num_shards(self) -> int:
        return math.ceil(len(self.keys) / self.rows_per_shard)

    def shard_keys(self, shard: int) -> tuple[str, ...]:
        """The inputs shard ``shard`` covers, in order."""
        if not 0 <= shard < self.num_shards:
            raise InvalidInputError(f"shard {shard} out of range: the run has {self.num_shards} shards")
        return self.keys[shard * self.rows_per_shard : (shard + 1) * self.rows_per_shard]

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["num_inputs"] = len(document.pop("keys"))
        return document


def run_id(
    model_id: str, site: str, preprocess: str, dataset_id: str, keys: tuple[str, ...] | list[str]
) -> str:
    """Short sha256 of the run's identity: model, site, preprocessing, dataset and its key list."""
    identity = json.dumps([model_id, str(Site.parse(site)), preprocess, dataset_id, list(keys)])
    return hashlib.sha256(identity.encode()).hexdigest()[:RUN_ID_LENGTH]


def run_prefix(run: str) -> str:
    return f"{RUNS_PREFIX}/{run}/"


def shard_stem(shard: int) -> str:
    return f"shards/shard-{shard:06d}"


@dataclass(frozen=True)
class ShardInfo:
    """One shard's completion record (its ``done.json``)."""

    index: int
    rows: int
    shape: tuple[int, ...]
    sha256: str
    keys_sha256: str
    skipped: dict[str, str]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ShardInfo:
        return cls(
            index=int(raw["index"]),
            rows=int(raw["rows"]),
            shape=tuple(raw["shape"]),
            sha256=str(raw["sha256"]),
            keys_sha256=str(raw["keys_sha256"]),
            skipped=dict(raw["skipped"]),
        )


@dataclass(frozen=True)
class Manifest:
    """The commit record of a run: shard row counts and checksums, skipped inputs, the job config."""

    run_id: str
    spec: dict[str, Any]
    row_shape: tuple[int, ...]
    shards: list[ShardInfo]
    format_version: int = FORMAT_VERSION

    @property
    def num_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def skipped(self) -> dict[str, str]:
        return {key: reason for s in self.shards for key, reason in s.skipped.items()}

    def to_json(self) -> bytes:
        document = asdict(self)
        document["num_rows"] = self.num_rows
        return json.dumps(document, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw = json.loads(data)
        return cls(
            run_id=raw["run_id"],
            spec=raw["spec"],
            row_shape=tuple(raw["row_shape"]),
            shards=[ShardInfo.from_dict(s) for s in raw["shards"]],
            format_version=int(raw["format_version"]),
        )
