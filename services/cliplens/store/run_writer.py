"""Writing an activation run shard by shard, from any number of workers, then committing it.

Each shard is written as tensor, keys, then a ``done.json`` marker; a shard counts as written
only once its marker exists, so a worker that died half-way leaves a shard that a re-run simply
writes again. ``commit()`` refuses to run until every shard is written, then writes the manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import save
from torch import Tensor

from cliplens.core.errors import InvalidInputError, NotFoundError, ShapeMismatchError
from cliplens.store.errors import RunIncompleteError
from cliplens.store.objects import ObjectStore
from cliplens.store.runs import (
    MANIFEST_FILE,
    TENSOR_NAME,
    Manifest,
    RunSpec,
    ShardInfo,
    run_prefix,
    shard_stem,
)


class ActivationWriter:
    """Writes the shards of ``spec``'s run into ``store`` under ``runs/<run_id>/``."""

    def __init__(self, store: ObjectStore, spec: RunSpec) -> None:
        self.spec = spec
        self.run_id = spec.run_id
        self.store = store.child(run_prefix(self.run_id))

    def shard_info(self, shard: int) -> ShardInfo | None:
        """The shard's completion record, or ``None`` while it is not (completely) written."""
        self.spec.shard_keys(shard)
        try:
            return ShardInfo.from_dict(json.loads(self.store.get_bytes(f"{shard_stem(shard)}.done.json")))
        except NotFoundError:
            return None

    def pending_shards(self) -> list[int]:
        """Shards still to write, in order (all of them for a new run)."""
        done = {key for key in self.store.list("shards/") if key.endswith(".done.json")}
        return [i for i in range(self.spec.num_shards) if f"{shard_stem(i)}.done.json" not in done]

    def write_shard(
        self,
        shard: int,
        keys: Sequence[str],
        activations: Tensor,
        labels: Sequence[str | None] | None = None,
        skipped: Mapping[str, str] | None = None,
    ) -> bool:
        """Write shard ``shard``: one activation row per key in ``keys``, stored as fp16.

        ``keys`` and ``skipped`` (input key -> reason) together must be exactly the shard's inputs,
        with ``keys`` in input order. Returns ``False`` (writing nothing) if the shard is already done.
        """
        skipped = dict(skipped or {})
        labels = list(labels) if labels is not None else [None] * len(keys)
        self._check_shard(shard, list(keys), activations, labels, skipped)
        if self.shard_info(shard) is not None:
            return False
        stem = shard_stem(shard)
        tensor_bytes = save({TENSOR_NAME: activations.detach().to("cpu", torch.float16).contiguous()})
        keys_bytes = _keys_parquet(list(keys), labels)
        self.store.put_bytes(f"{stem}.safetensors", tensor_bytes)
        self.store.put_bytes(f"{stem}.keys.parquet", keys_bytes)
        info = ShardInfo(
            index=shard,
            rows=len(keys),
            shape=tuple(activations.shape),
            sha256=hashlib.sha256(tensor_bytes).hexdigest(),
            keys_sha256=hashlib.sha256(keys_bytes).hexdigest(),
            skipped=skipped,
        )
        self.store.put_bytes(f"{stem}.done.json", json.dumps(asdict(info)).encode())
        return True

    def commit(self) -> Manifest:
        """Write ``manifest.json`` from the written shards; raise if any shard is missing."""
        pending = self.pending_shards()
        if pending:
            listed = ", ".join(map(str, pending[:10])) + (", ..." if len(pending) > 10 else "")
            raise RunIncompleteError(
                f"run {self.run_id} is incomplete: {len(pending)} of {self.spec.num_shards} shards "
                f"not written ({listed})"
            )
        shards = [info for i in range(self.spec.num_shards) if (info := self.shard_info(i)) is not None]
        row_shapes = {s.shape[1:] for s in shards if s.rows > 0}
        if len(row_shapes) > 1:
            raise ShapeMismatchError(
                f"run {self.run_id}: shards disagree on the row shape: {sorted(row_shapes)}"
            )
        if not row_shapes:
            raise InvalidInputError(f"run {self.run_id}: every input was skipped, nothing to commit")
        manifest = Manifest(
            run_id=self.run_id, spec=self.spec.to_dict(), row_shape=row_shapes.pop(), shards=shards
        )
        self.store.put_bytes(MANIFEST_FILE, manifest.to_json())
        return manifest

    def _check_shard(
        self,
        shard: int,
        keys: list[str],
        activations: Tensor,
        labels: list[str | None],
        skipped: dict[str, str],
    ) -> None:
        expected = self.spec.shard_keys(shard)
        if sorted([*keys, *skipped]) != sorted(expected) or keys != [k for k in expected if k not in skipped]:
            raise InvalidInputError(
                f"shard {shard} of run {self.run_id} must hold its {len(expected)} inputs "
                f"('{expected[0]}'..'{expected[-1]}') in order, each either written or skipped"
            )
        if activations.ndim not in (2, 3) or activations.shape[0] != len(keys):
            raise ShapeMismatchError(
                f"shard {shard}: activations must be (rows, d) or (rows, patches, d) with rows = "
                f"{len(keys)} keys, got {tuple(activations.shape)}"
            )
        if len(labels) != len(keys):
            raise ShapeMismatchError(f"shard {shard}: {len(labels)} labels for {len(keys)} keys")


def _keys_parquet(keys: list[str], labels: list[str | None]) -> bytes:
    table = pa.table({"key": pa.array(keys, pa.string()), "label": pa.array(labels, pa.string())})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
