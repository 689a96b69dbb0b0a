"""Activation runs: identity (``run_id``), object layout and the manifest.

Layout under ``runs/<run_id>/`` in an object store::

    shards/shard-000012-0003.safetensors   fp16 tensor "activations": (rows, d) or (rows, patches, d)
    shards/shard-000012-0003.keys.parquet  one row per tensor row: key (string), label (string or null)
    inputs/input-000012.done.json          written after all its parts: each part's rows, shape,
                                           sha256 and skipped inputs (key -> reason)
    manifest.json                          written last by commit(): the run is readable once it exists

Input shard ``i`` (the ``i``-th of the run's input-shard listing, see
:mod:`cliplens.store.input_shards`) is written as parts ``0, 1, ...`` of at most ``rows_per_shard``
inputs each, in input order, minus the inputs skipped there (undecodable images), so workers write
input shards independently; its ``done.json`` makes it committed. The manifest's shards are every
part in (input shard, part) order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from cliplens.core.errors import InvalidInputError
from cliplens.core.sites import Site
from cliplens.store.input_shards import InputShard

RUNS_PREFIX = "runs"
MANIFEST_FILE = "manifest.json"
TENSOR_NAME = "activations"
FORMAT_VERSION = 2
RUN_ID_LENGTH = 16


@dataclass(frozen=True)
class RunSpec:
    """What an activation run extracts; everything that changes the tensors is part of ``run_id``.

    ``preprocess`` describes the image preprocessing (e.g. ``str(clip.preprocess)``); ``inputs`` is
    the data set's input-shard listing (names, sizes, versions, row ranges). ``job`` is extra
    configuration recorded in the manifest only.
    """

    model_id: str
    site: str
    preprocess: str
    dataset_id: str
    inputs: tuple[InputShard, ...]
    rows_per_shard: int = 4096
    job: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "site", str(Site.parse(self.site)))
        if not self.inputs:
            raise InvalidInputError("an activation run needs at least one input shard")
        if self.rows_per_shard < 1:
            raise InvalidInputError(f"rows_per_shard must be at least 1, got {self.rows_per_shard}")

    @property
    def run_id(self) -> str:
        return run_id(self.model_id, self.site, self.preprocess, self.dataset_id, self.inputs)

    def check_input_shard(self, input_shard: int) -> None:
        if not 0 <= input_shard < len(self.inputs):
            raise InvalidInputError(
                f"input shard {input_shard} out of range: the run has {len(self.inputs)} input shards"
            )

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["input_shards"] = len(document.pop("inputs"))
        return document


def run_id(model_id: str, site: str, preprocess: str, dataset_id: str, inputs: tuple[InputShard, ...]) -> str:
    """Short sha256 of the run's identity: model, site, preprocessing, dataset and its input shards."""
    listing = [shard.to_dict() for shard in inputs]
    identity = json.dumps([model_id, str(Site.parse(site)), preprocess, dataset_id, listing], sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:RUN_ID_LENGTH]


def run_prefix(run: str) -> str:
    return f"{RUNS_PREFIX}/{run}/"


def part_stem(input_shard: int, part: int) -> str:
    return f"shards/shard-{input_shard:06d}-{part:04d}"


def input_marker(input_shard: int) -> str:
    """The key of input shard ``input_shard``'s completion record."""
    return f"inputs/input-{input_shard:06d}.done.json"


@dataclass(frozen=True)
class ShardInfo:
    """One written part: its place (input shard, part), rows, checksums and skipped inputs."""

    input_shard: int
    part: int
    rows: int
    shape: tuple[int, ...]
    sha256: str
    keys_sha256: str
    skipped: dict[str, str]

    @property
    def stem(self) -> str:
        return part_stem(self.input_shard, self.part)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ShardInfo:
        return cls(
            input_shard=int(raw["input_shard"]),
            part=int(raw["part"]),
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
        """Skipped input key -> reason (a key skipped in several input shards appears once)."""
        return {key: reason for s in self.shards for key, reason in s.skipped.items()}

    @property
    def num_skipped(self) -> int:
        return sum(len(s.skipped) for s in self.shards)

    def to_json(self) -> bytes:
        document = asdict(self)
        document["num_rows"] = self.num_rows
        return json.dumps(document, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw = json.loads(data)
        if int(raw["format_version"]) != FORMAT_VERSION:
            raise InvalidInputError(
                f"run {raw['run_id']} has format version {raw['format_version']}, this cliplens reads "
                f"{FORMAT_VERSION}: extract it again (the new run gets a new id)"
            )
        return cls(
            run_id=raw["run_id"],
            spec=raw["spec"],
            row_shape=tuple(raw["row_shape"]),
            shards=[ShardInfo.from_dict(s) for s in raw["shards"]],
            format_version=int(raw["format_version"]),
        )
