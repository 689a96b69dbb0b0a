"""Reading a committed activation run: streamed batches, shuffled training batches, rows by key.

Shard ``i`` is the ``i``-th part in the manifest's list (parts in input-shard order).
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterator

import pyarrow.parquet as pq
import torch
from safetensors.torch import load
from torch import Tensor

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.store.errors import RunNotCommittedError
from cliplens.store.input_shards import infer_format, open_inputs
from cliplens.store.objects import LocalStore, ObjectStore
from cliplens.store.prefetch import prefetch
from cliplens.store.runs import MANIFEST_FILE, TENSOR_NAME, Manifest, run_prefix

DEFAULT_MAX_LOAD_BYTES = 2 * 1024**3


class ActivationRun:
    """A committed run in an object store; shards are read (and checksummed) on demand."""

    def __init__(self, store: ObjectStore, run_id: str, *, verify: bool = True) -> None:
        self.run_id = run_id
        self.store = store.child(run_prefix(run_id))
        self.verify = verify
        try:
            self.manifest = Manifest.from_json(self.store.get_bytes(MANIFEST_FILE))
        except NotFoundError:
            raise RunNotCommittedError(
                f"run {run_id} not committed: no {MANIFEST_FILE} under {self.store.uri}"
            ) from None
        self._index: dict[str, tuple[int, int] | None] | None = None
        self._cached: tuple[int, Tensor] | None = None

    @property
    def num_rows(self) -> int:
        return self.manifest.num_rows

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.manifest.row_shape

    def shard(self, index: int) -> Tensor:
        """Shard ``index``'s fp16 activations, checked against the manifest's sha256."""
        info = self.manifest.shards[index]
        data = self.store.get_bytes(f"{info.stem}.safetensors")
        if self.verify and hashlib.sha256(data).hexdigest() != info.sha256:
            raise InvalidInputError(f"run {self.run_id}: shard {info.stem} does not match its sha256")
        return load(data)[TENSOR_NAME]

    def shard_keys(self, index: int) -> tuple[list[str], list[str | None]]:
        """Input keys and labels of shard ``index``'s rows, in row order."""
        info = self.manifest.shards[index]
        table = pq.read_table(io.BytesIO(self.store.get_bytes(f"{info.stem}.keys.parquet")))
        return table.column("key").to_pylist(), table.column("label").to_pylist()

    def keys(self) -> list[str]:
        return [key for i in range(len(self.manifest.shards)) for key in self.shard_keys(i)[0]]

    def labels(self) -> list[str | None]:
        return [label for i in range(len(self.manifest.shards)) for label in self.shard_keys(i)[1]]

    def shards(self, order: list[int] | None = None, prefetch_depth: int = 2) -> Iterator[Tensor]:
        """Every non-empty shard (in ``order`` if given), loaded by a background thread."""
        indices = order if order is not None else list(range(len(self.manifest.shards)))
        nonempty = [i for i in indices if self.manifest.shards[i].rows > 0]
        return prefetch((self.shard(i) for i in nonempty), prefetch_depth)

    def batches(self, batch_size: int, prefetch_depth: int = 2) -> Iterator[Tensor]:
        """Rows in order, ``batch_size`` at a time (the last batch may be smaller)."""
        _check_batch_size(batch_size)
        pending: list[Tensor] = []
        held = 0
        for shard in self.shards(prefetch_depth=prefetch_depth):
            pending.append(shard)
            held += shard.shape[0]
            if held >= batch_size:
                rows = torch.cat(pending)
                cut = held - held % batch_size
                yield from _split(rows[:cut], batch_size)
                pending, held = [rows[cut:]], held - cut
        if held:
            yield torch.cat(pending)

    def row(self, key: str) -> Tensor:
        """The activation row of input ``key`` (keys are unique within an input shard only: a key
        of rows in several input shards is refused)."""
        if self._index is None:
            self._index = {}
            for s in range(len(self.manifest.shards)):
                for r, k in enumerate(self.shard_keys(s)[0]):
                    self._index[k] = None if k in self._index else (s, r)
        if key not in self._index:
            reason = self.manifest.skipped.get(key)
            detail = f"it was skipped: {reason}" if reason else "no such input"
            raise NotFoundError(f"run {self.run_id} has no row for input '{key}': {detail}")
        place = self._index[key]
        if place is None:
            raise InvalidInputError(
                f"run {self.run_id} has rows for input '{key}' in several input shards; "
                "keys are unique only within an input shard: read it with shard_keys() and shard()"
            )
        shard, offset = place
        if self._cached is None or self._cached[0] != shard:
            self._cached = (shard, self.shard(shard))
        return self._cached[1][offset]

    def load_all(self, max_bytes: int = DEFAULT_MAX_LOAD_BYTES) -> Tensor:
        """Every row in one fp16 tensor; refuses runs larger than ``max_bytes``."""
        size = self.num_rows * math.prod(self.row_shape) * 2
        if size > max_bytes:
            raise InvalidInputError(
                f"run {self.run_id} holds {size} bytes of activations, above max_bytes={max_bytes}; stream it instead"
            )
        return torch.cat(list(self.shards()))

    def training_batches(
        self, batch_size: int, buffer_rows: int = 65536, *, seed: int = 0, prefetch_depth: int = 2
    ) -> ShuffledBatches:
        """Shuffled ``(batch, d)`` batches for SAE training (patch rows are flattened into vectors)."""
        return ShuffledBatches(self, batch_size, buffer_rows, seed=seed, prefetch_depth=prefetch_depth)


def input_folder(store: ObjectStore, run_id: str) -> str | None:
    """The image folder run ``run_id`` was extracted from, whose file keys are the run's input ids;
    ``None`` when its inputs were parquet or WebDataset shards, or the folder is gone."""
    job = ActivationRun(store, run_id, verify=False).manifest.spec.get("job") or {}
    uri = job.get("inputs")
    if not isinstance(uri, str) or infer_format(uri, job.get("input_format")) != "folder":
        return None
    folder = open_inputs(uri, "folder").store
    return None if isinstance(folder, LocalStore) and not folder.root.is_dir() else folder.uri


class ShuffledBatches:
    """An ``ActivationSource``: each epoch visits shards in a new random order through a shuffle buffer.

    Every activation vector appears once per epoch; all batches but the last are full, so
    ``len()`` is ``ceil(vectors / batch_size)``.
    """

    def __init__(
        self, run: ActivationRun, batch_size: int, buffer_rows: int, *, seed: int = 0, prefetch_depth: int = 2
    ) -> None:
        _check_batch_size(batch_size)
        if buffer_rows < batch_size:
            raise InvalidInputError(f"buffer_rows ({buffer_rows}) must be at least batch_size ({batch_size})")
        self.run, self.batch_size, self.buffer_rows = run, batch_size, buffer_rows
        self.prefetch_depth = prefetch_depth
        self.generator = torch.Generator().manual_seed(seed)
        self.width = run.row_shape[-1]
        self.vectors = run.num_rows * math.prod(run.row_shape[:-1])

    def __len__(self) -> int:
        return math.ceil(self.vectors / self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        order = torch.randperm(len(self.run.manifest.shards), generator=self.generator).tolist()
        pool = torch.empty(0, self.width, dtype=torch.float16)
        for shard in self.run.shards(order, self.prefetch_depth):
            pool = torch.cat([pool, shard.reshape(-1, self.width)])
            if pool.shape[0] < self.buffer_rows:
                continue
            pool = pool[torch.randperm(pool.shape[0], generator=self.generator)]
            full = (pool.shape[0] - self.buffer_rows // 2) // self.batch_size * self.batch_size
            yield from _split(pool[:full], self.batch_size)
            pool = pool[full:]
        yield from _split(pool[torch.randperm(pool.shape[0], generator=self.generator)], self.batch_size)


def _split(rows: Tensor, batch_size: int) -> tuple[Tensor, ...]:
    """``rows`` in chunks of ``batch_size``; no chunk at all for zero rows."""
    return rows.split(batch_size) if rows.shape[0] else ()


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
