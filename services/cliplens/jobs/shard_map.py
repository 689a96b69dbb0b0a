"""One function over every shard of an activation run with an SAE, the results merged into one:
in this process (:class:`LocalShards`), or as Ray tasks merged in a tree as they finish
(:class:`RayShards`). Both print progress per shard and give the same result when ``merge`` is
exact, associative and commutative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import ray

from cliplens.core.errors import InvalidInputError
from cliplens.core.sae import Sae
from cliplens.jobs.progress import Progress
from cliplens.store.run_reader import ActivationRun

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of a run: ``rows`` rows, the first of them row ``first_row`` of the run."""

    index: int
    first_row: int
    rows: int


ShardFn = Callable[[ActivationRun, Sae, Shard], T]
MergeFn = Callable[[Sequence[T]], T]
FAN_IN = 4


class ShardMap(Protocol):
    """Runs ``on_shard`` on every non-empty shard and merges the results into one."""

    def reduce(self, label: str, on_shard: ShardFn[T], merge: MergeFn[T]) -> T: ...


class LocalShards:
    """Shards in order, in this process, each merged into the running result."""

    def __init__(self, run: ActivationRun, sae: Sae) -> None:
        self.run, self.sae, self.shards = run, sae, _nonempty(run)

    def reduce(self, label: str, on_shard: ShardFn[T], merge: MergeFn[T]) -> T:
        progress = Progress(label, self.run.num_rows)
        result: T | None = None
        for shard in self.shards:
            part = on_shard(self.run, self.sae, shard)
            result = part if result is None else merge([result, part])
            progress.add(shard.rows)
        assert result is not None
        return result


class RayShards:
    """A Ray task per shard (with a GPU when the cluster has GPUs), at most ``window`` at once;
    finished results are merged ``fan_in`` at a time by Ray tasks, so only the final result reaches
    the driver. The run and the SAE go to the object store once. Needs Ray to be initialised."""

    def __init__(self, run: ActivationRun, sae: Sae, fan_in: int = FAN_IN) -> None:
        if fan_in < 2:
            raise InvalidInputError(f"fan-in must be at least 2, got {fan_in}")
        self.run, self.shards, self.fan_in = run, _nonempty(run), fan_in
        self.run_ref, self.sae_ref = ray.put(run), ray.put(sae)
        resources = ray.cluster_resources()
        self.gpus = 1 if resources.get("GPU", 0) > 0 else 0
        self.window = 2 * max(1, int(resources.get("GPU" if self.gpus else "CPU", 1)))

    def reduce(self, label: str, on_shard: ShardFn[T], merge: MergeFn[T]) -> T:
        progress = Progress(label, self.run.num_rows)
        on_shard_ref, merge_ref = ray.put(on_shard), ray.put(merge)
        waiting = iter(self.shards)
        leaves: dict[ray.ObjectRef, int] = {}  # running shard tasks -> their rows
        pending: list[ray.ObjectRef] = []  # shard and merge tasks not finished
        ready: list[ray.ObjectRef] = []  # finished results not merged yet
        while True:
            while len(leaves) < self.window and (shard := next(waiting, None)) is not None:
                task = _on_shard.options(num_gpus=self.gpus)
                ref = task.remote(on_shard_ref, self.run_ref, self.sae_ref, shard, self.gpus > 0)
                leaves[ref] = shard.rows
                pending.append(ref)
            while len(ready) >= self.fan_in or (len(ready) > 1 and not pending):
                group, ready = ready[: self.fan_in], ready[self.fan_in :]
                pending.append(_merge.remote(merge_ref, *group))
            if not pending:
                return ray.get(ready[0])
            done, pending = ray.wait(pending, num_returns=1, fetch_local=False)
            for ref in done:
                if ref in leaves:
                    progress.add(leaves.pop(ref))
            ready.extend(done)


@ray.remote
def _on_shard(on_shard: ShardFn[Any], run: ActivationRun, sae: Sae, shard: Shard, use_gpu: bool) -> Any:
    return on_shard(run, sae.to("cuda" if use_gpu else "cpu"), shard)


@ray.remote
def _merge(merge: MergeFn[Any], *parts: Any) -> Any:
    return merge(parts)


def _nonempty(run: ActivationRun) -> list[Shard]:
    """The run's shards that hold rows, with their offsets in the run."""
    found, first = [], 0
    for index, info in enumerate(run.manifest.shards):
        if info.rows:
            found.append(Shard(index, first, info.rows))
        first += info.rows
    if not found:
        raise InvalidInputError(f"run {run.run_id} has no rows")
    return found
