"""Writing an activation run input shard by input shard, from any number of workers, then committing it.

Workers write parts (tensor, then keys); an input shard counts as written only once its
``done.json`` exists, written after all of its parts and listing them, so a worker that died
half-way leaves an input shard that a re-run simply writes again (its parts are overwritten).
``commit()`` refuses to run until every input shard is written, then writes the manifest.
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
    input_marker,
    run_prefix,
)


class ActivationWriter:
    """Writes the parts of ``spec``'s run into ``store`` under ``runs/<run_id>/``; pickles to workers."""

    def __init__(self, store: ObjectStore, spec: RunSpec) -> None:
        self.spec = spec
        self.run_id = spec.run_id
        self.store = store.child(run_prefix(self.run_id))

    def written(self, input_shard: int) -> list[ShardInfo] | None:
        """Input shard ``input_shard``'s parts, or ``None`` while it is not (completely) written."""
        self.spec.check_input_shard(input_shard)
        try:
            raw = json.loads(self.store.get_bytes(input_marker(input_shard)))
        except NotFoundError:
            return None
        return [ShardInfo.from_dict(part) for part in raw["parts"]]

    def pending_input_shards(self) -> list[int]:
        """Input shards still to write, in order (all of them for a new run)."""
        done = set(self.store.list("inputs/"))
        return [i for i in range(len(self.spec.inputs)) if input_marker(i) not in done]

    def write_part(
        self,
        input_shard: int,
        part: int,
        keys: Sequence[str],
        activations: Tensor,
        labels: Sequence[str | None] | None = None,
        skipped: Mapping[str, str] | None = None,
    ) -> ShardInfo:
        """Write part ``part`` of input shard ``input_shard``: one fp16 activation row per key.

        ``keys`` (in input order) and ``skipped`` (input key -> reason) are the part's inputs, at
        most ``rows_per_shard`` of them. Returns the part's record for :meth:`finish_input_shard`.
        """
        skipped = dict(skipped or {})
        labels = list(labels) if labels is not None else [None] * len(keys)
        self._check_part(input_shard, part, list(keys), activations, labels, skipped)
        tensor_bytes = save({TENSOR_NAME: activations.detach().to("cpu", torch.float16).contiguous()})
        keys_bytes = _keys_parquet(list(keys), labels)
        info = ShardInfo(
            input_shard=input_shard,
            part=part,
            rows=len(keys),
            shape=tuple(activations.shape),
            sha256=hashlib.sha256(tensor_bytes).hexdigest(),
            keys_sha256=hashlib.sha256(keys_bytes).hexdigest(),
            skipped=skipped,
        )
        self.store.put_bytes(f"{info.stem}.safetensors", tensor_bytes)
        self.store.put_bytes(f"{info.stem}.keys.parquet", keys_bytes)
        return info

    def finish_input_shard(self, input_shard: int, parts: Sequence[ShardInfo]) -> None:
        """Mark input shard ``input_shard`` written: its ``parts`` (numbered 0, 1, ...) are all stored."""
        self.spec.check_input_shard(input_shard)
        places = [(p.input_shard, p.part) for p in parts]
        if places != [(input_shard, i) for i in range(len(parts))]:
            raise InvalidInputError(
                f"input shard {input_shard} of run {self.run_id}: parts must be its parts 0..{len(parts) - 1} "
                f"in order, got {places}"
            )
        document = {"input_shard": input_shard, "parts": [asdict(p) for p in parts]}
        self.store.put_bytes(input_marker(input_shard), json.dumps(document).encode())

    def commit(self) -> Manifest:
        """Write ``manifest.json`` from the written input shards; raise if any is missing."""
        pending = self.pending_input_shards()
        if pending:
            listed = ", ".join(map(str, pending[:10])) + (", ..." if len(pending) > 10 else "")
            raise RunIncompleteError(
                f"run {self.run_id} is incomplete: {len(pending)} of {len(self.spec.inputs)} input shards "
                f"not written ({listed})"
            )
        shards = [part for i in range(len(self.spec.inputs)) for part in self.written(i) or []]
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

    def _check_part(
        self,
        input_shard: int,
        part: int,
        keys: list[str],
        activations: Tensor,
        labels: list[str | None],
        skipped: dict[str, str],
    ) -> None:
        self.spec.check_input_shard(input_shard)
        where = f"part {part} of input shard {input_shard} of run {self.run_id}"
        inputs = len(keys) + len(skipped)
        if part < 0 or not 0 < inputs <= self.spec.rows_per_shard:
            raise InvalidInputError(
                f"{where}: a part holds 1..{self.spec.rows_per_shard} inputs (written or skipped), got {inputs}"
            )
        if len({*keys, *skipped}) != inputs:
            raise InvalidInputError(f"{where}: input keys must be distinct, each either written or skipped")
        if activations.ndim not in (2, 3) or activations.shape[0] != len(keys):
            raise ShapeMismatchError(
                f"{where}: activations must be (rows, d) or (rows, patches, d) with rows = "
                f"{len(keys)} keys, got {tuple(activations.shape)}"
            )
        if len(labels) != len(keys):
            raise ShapeMismatchError(f"{where}: {len(labels)} labels for {len(keys)} keys")


def _keys_parquet(keys: list[str], labels: list[str | None]) -> bytes:
    table = pa.table({"key": pa.array(keys, pa.string()), "label": pa.array(labels, pa.string())})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
