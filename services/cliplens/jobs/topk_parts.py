"""The per-shard halves of ``cliplens topk`` and how they merge, the same in one process and on Ray.

Pass 1 (:func:`shard_top`) keeps each latent's top ``k`` rows of one shard as int64 sort keys that
pack the activation's float32 bits (high half) above the inverted global row number (low half):
one ``topk`` on them orders by activation descending, then row ascending, so ties break the same
way whatever the shards' order. Pass 2 (:func:`shard_stats`) counts one shard's histogram and
per-label firing inputs, all integers. Merging is ``topk`` of keys, integer sums and set unions:
exact, associative and commutative, so any merge tree gives the same result as one pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from cliplens.core.errors import InvalidInputError
from cliplens.core.sae import Sae
from cliplens.jobs.shard_map import Shard
from cliplens.store.feature_index import Pooling
from cliplens.store.run_reader import ActivationRun
from cliplens.store.topk_cache import LatentStats
from cliplens.store.topk_results import TopKRow

HISTOGRAM_BINS = 32
VECTORS_PER_BATCH = 8192
ROW_LIMIT = 2**32 - 1
_LOW_BITS = 32


@dataclass(frozen=True)
class TopPart:
    """Pass 1 over some shards: sort keys ``(<= k, d_sae)`` per pooling, best first; the key and
    label of every row those keys rank with a positive activation; the labels seen."""

    keys: dict[Pooling, Tensor]
    inputs: dict[int, tuple[str, str | None]]
    labels: frozenset[str]

    def values(self, pooling: Pooling) -> Tensor:
        return _key_values(self.keys[pooling])

    def rows(self, pooling: Pooling) -> Tensor:
        return _key_rows(self.keys[pooling])


@dataclass(frozen=True)
class StatsPart:
    """Pass 2 over some shards: per pooling, histogram counts ``(d_sae, bins)`` on ``[0, max]`` and
    firing inputs per label ``(labels, d_sae)``."""

    counts: dict[Pooling, Tensor]
    by_label: dict[Pooling, Tensor]


def check_rows(run: ActivationRun) -> None:
    """Refuse runs whose row numbers do not fit the sort keys."""
    if run.num_rows > ROW_LIMIT:
        raise InvalidInputError(
            f"run {run.run_id} has {run.num_rows:,} rows; topk ranks at most {ROW_LIMIT:,}"
        )


@torch.no_grad()
def shard_top(run: ActivationRun, sae: Sae, shard: Shard, poolings: Sequence[Pooling], k: int) -> TopPart:
    """Pass 1 over one shard."""
    keys: dict[Pooling, Tensor] = {}
    for offset, latents in _pooled_batches(run, sae, shard, poolings):
        for pooling, z in latents.items():
            first = shard.first_row + offset
            batch = _sort_keys(z, torch.arange(first, first + z.shape[0], device=z.device))
            keys[pooling] = _best(torch.cat([keys[pooling], batch]) if pooling in keys else batch, k)
    keys = {p: t.cpu() for p, t in keys.items()}
    names, labels = run.shard_keys(shard.index)
    inputs = {
        row: (names[row - shard.first_row], labels[row - shard.first_row]) for row in _ranked_rows(keys)
    }
    return TopPart(keys, inputs, frozenset(x for x in labels if x is not None))


def merge_tops(parts: Sequence[TopPart], k: int) -> TopPart:
    """Pass 1 over the union of the parts' shards."""
    keys = {p: _best(torch.cat([part.keys[p] for part in parts]), k) for p in parts[0].keys}
    kept = _ranked_rows(keys)
    inputs = {row: entry for part in parts for row, entry in part.inputs.items() if row in kept}
    return TopPart(keys, inputs, frozenset().union(*(part.labels for part in parts)))


@torch.no_grad()
def shard_stats(
    run: ActivationRun, sae: Sae, shard: Shard, maxima: dict[Pooling, Tensor], label_names: Sequence[str]
) -> StatsPart:
    """Pass 2 over one shard, given every latent's maximum and the run's label names."""
    number = {name: i for i, name in enumerate(label_names)}
    device = sae.W_dec.device
    peaks = {p: peak.to(device) for p, peak in maxima.items()}
    label_index = torch.tensor(
        [-1 if x is None else number[x] for x in run.shard_keys(shard.index)[1]], device=device
    )
    d_sae = sae.cfg.d_sae
    counts = {p: torch.zeros(d_sae * HISTOGRAM_BINS, dtype=torch.long, device=device) for p in maxima}
    by_label = {p: torch.zeros(len(label_names), d_sae, dtype=torch.long, device=device) for p in maxima}
    for offset, latents in _pooled_batches(run, sae, shard, list(maxima)):
        for pooling, z in latents.items():
            fired = z > 0
            bins = (z / peaks[pooling] * HISTOGRAM_BINS).long().clamp(0, HISTOGRAM_BINS - 1)
            flat = (torch.arange(d_sae, device=device) * HISTOGRAM_BINS + bins)[fired]
            counts[pooling] += torch.bincount(flat, minlength=d_sae * HISTOGRAM_BINS)
            batch_labels = label_index[offset : offset + z.shape[0]]
            known = batch_labels >= 0
            by_label[pooling].index_add_(0, batch_labels[known], fired[known].long())
    return StatsPart(
        {p: c.view(d_sae, HISTOGRAM_BINS).cpu() for p, c in counts.items()},
        {p: c.cpu() for p, c in by_label.items()},
    )


def merge_stats(parts: Sequence[StatsPart]) -> StatsPart:
    """Pass 2 over the union of the parts' shards."""
    first = parts[0]
    return StatsPart(
        {p: torch.stack([part.counts[p] for part in parts]).sum(0) for p in first.counts},
        {p: torch.stack([part.by_label[p] for part in parts]).sum(0) for p in first.by_label},
    )


def maxima(top: TopPart) -> dict[Pooling, Tensor]:
    """Every latent's largest activation (a tiny positive number for a latent that never fires)."""
    return {p: top.values(p)[0].clamp_min(1e-12) for p in top.keys}


def topk_rows(top: TopPart, pooling: Pooling) -> list[TopKRow]:
    """The ranking's rows: each latent's inputs with a positive activation, best first."""
    return [
        TopKRow(latent, rank, top.inputs[row][0], value, top.inputs[row][1])
        for latent, (values, rows) in enumerate(
            zip(top.values(pooling).T.tolist(), top.rows(pooling).T.tolist(), strict=True)
        )
        for rank, (value, row) in enumerate(zip(values, rows, strict=True))
        if value > 0
    ]


def latent_stats(
    stats: StatsPart, pooling: Pooling, top: Tensor, label_names: Sequence[str], num_rows: int
) -> list[LatentStats]:
    """Per-latent statistics of one pooling, given its maxima ``top``."""
    counts, by_label = stats.counts[pooling], stats.by_label[pooling]
    fires = counts.sum(1).tolist()
    return [
        LatentStats(
            fires=int(fires[latent]),
            rows=num_rows,
            histogram_edges=torch.linspace(0.0, peak, HISTOGRAM_BINS + 1).tolist() if fires[latent] else [],
            histogram_counts=counts[latent].tolist() if fires[latent] else [],
            label_counts={
                name: int(n) for name, n in zip(label_names, by_label[:, latent].tolist(), strict=True) if n
            },
        )
        for latent, peak in enumerate(top.tolist())
    ]


def _pooled_batches(
    run: ActivationRun, sae: Sae, shard: Shard, poolings: Sequence[Pooling]
) -> Iterator[tuple[int, dict[Pooling, Tensor]]]:
    """``(offset in the shard, {pooling: float32 latents (rows, d_sae)})``, a batch at a time, in order."""
    rows = run.shard(shard.index)
    batch_size = max(1, VECTORS_PER_BATCH // (rows.shape[1] if rows.ndim == 3 else 1))
    for offset in range(0, rows.shape[0], batch_size):
        z = sae.encode(rows[offset : offset + batch_size].to(sae.W_dec.device, torch.float32)).float()
        pooled = {"max": z} if z.ndim == 2 else {"max": z.amax(1), "mean": z.mean(1)}
        yield offset, {p: pooled[p] for p in poolings}


def _sort_keys(z: Tensor, rows: Tensor) -> Tensor:
    """int64 keys ordering ``z`` (rows, d_sae) by value descending, then row ascending; values that
    are not positive (they never rank) count as +0.0."""
    bits = torch.where(z > 0, z, 0.0).view(torch.int32).long()
    return (bits << _LOW_BITS) | (ROW_LIMIT - rows)[:, None]


def _best(keys: Tensor, k: int) -> Tensor:
    return keys.topk(min(k, keys.shape[0]), dim=0).values


def _key_values(keys: Tensor) -> Tensor:
    return (keys >> _LOW_BITS).to(torch.int32).view(torch.float32)


def _key_rows(keys: Tensor) -> Tensor:
    return ROW_LIMIT - (keys & ROW_LIMIT)


def _ranked_rows(keys: dict[Pooling, Tensor]) -> set[int]:
    """Rows that rank somewhere with a positive activation."""
    return {row for t in keys.values() for row in _key_rows(t)[_key_values(t) > 0].tolist()}
