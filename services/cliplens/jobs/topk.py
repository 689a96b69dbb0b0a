"""Top-k activating inputs and activation histograms of every SAE latent over its stored run.

Two streaming passes over the run: the first keeps each latent's top ``k`` inputs (only positive
activations count) and its maximum; the second fills a histogram of the positive activations
on ``[0, max]`` and counts the firing inputs per label. At patch sites an input's activation
is its maximum over patches (the ranking stored under the SAE id) or its mean over patches (stored
under ``<sae_id>.patch-mean``). Results go to the store first (durable), then to Redis (a cache).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from cliplens.core.sae import Sae
from cliplens.jobs.progress import Progress
from cliplens.store.feature_index import Pooling, TopKResult, result_ids
from cliplens.store.run_reader import ActivationRun
from cliplens.store.topk_cache import LatentStats
from cliplens.store.topk_results import TopKRow

HISTOGRAM_BINS = 32
VECTORS_PER_BATCH = 8192


@torch.no_grad()
def compute_topk(run: ActivationRun, sae: Sae, sae_id: str, k: int) -> list[TopKResult]:
    """Both passes over ``run`` for every pooling that applies to its site."""
    keys, labels = run.keys(), run.labels()
    patches = len(run.row_shape) == 2
    poolings = result_ids(sae_id, patches)
    d_sae = sae.cfg.d_sae
    batch_size = max(1, VECTORS_PER_BATCH // (run.row_shape[0] if patches else 1))
    values = {p: torch.zeros(0, d_sae) for p in poolings}
    rows = {p: torch.zeros(0, d_sae, dtype=torch.long) for p in poolings}
    progress = Progress("topk pass 1/2", run.num_rows)
    for offset, latents in _pooled_batches(run, sae, batch_size, list(poolings)):
        for pooling, z in latents.items():
            index = torch.arange(offset, offset + z.shape[0])[:, None].expand_as(z)
            merged_values = torch.cat([values[pooling], z])
            merged_rows = torch.cat([rows[pooling], index])
            top = merged_values.topk(min(k, merged_values.shape[0]), dim=0)
            values[pooling], rows[pooling] = top.values, merged_rows.gather(0, top.indices)
        progress.add(next(iter(latents.values())).shape[0])
    label_names = sorted({label for label in labels if label is not None})
    label_index = torch.tensor([label_names.index(x) if x is not None else -1 for x in labels])
    maxima = {p: values[p][0].clamp_min(1e-12) for p in poolings}
    counts = {p: torch.zeros(d_sae, HISTOGRAM_BINS, dtype=torch.long) for p in poolings}
    by_label = {p: torch.zeros(len(label_names), d_sae, dtype=torch.long) for p in poolings}
    progress = Progress("topk pass 2/2", run.num_rows)
    for offset, latents in _pooled_batches(run, sae, batch_size, list(poolings)):
        for pooling, z in latents.items():
            fired = z > 0
            bins = (z / maxima[pooling] * HISTOGRAM_BINS).long().clamp(0, HISTOGRAM_BINS - 1)
            flat = (torch.arange(d_sae) * HISTOGRAM_BINS + bins)[fired]
            counts[pooling] += torch.bincount(flat, minlength=d_sae * HISTOGRAM_BINS).view(d_sae, -1)
            batch_labels = label_index[offset : offset + z.shape[0]]
            known = batch_labels >= 0
            by_label[pooling].index_add_(0, batch_labels[known], fired[known].long())
        progress.add(next(iter(latents.values())).shape[0])
    return [
        TopKResult(
            result_id,
            _rows(values[pooling], rows[pooling], keys, labels),
            _stats(counts[pooling], by_label[pooling], maxima[pooling], label_names, run.num_rows),
        )
        for pooling, result_id in poolings.items()
    ]


def _pooled_batches(
    run: ActivationRun, sae: Sae, batch_size: int, poolings: list[Pooling]
) -> Iterator[tuple[int, dict[Pooling, Tensor]]]:
    """``(row offset, {pooling: latents (rows, d_sae)})`` for each batch of the run, in row order."""
    offset = 0
    device = sae.W_dec.device
    for batch in run.batches(batch_size):
        z = sae.encode(batch.to(device, torch.float32)).cpu()
        pooled: dict[Pooling, Tensor] = {"max": z} if z.ndim == 2 else {"max": z.amax(1), "mean": z.mean(1)}
        yield offset, {p: pooled[p] for p in poolings}
        offset += batch.shape[0]


def _rows(values: Tensor, rows: Tensor, keys: list[str], labels: list[str | None]) -> list[TopKRow]:
    return [
        TopKRow(latent, rank, keys[row], value, labels[row])
        for latent, (latent_values, latent_rows) in enumerate(
            zip(values.T.tolist(), rows.T.tolist(), strict=True)
        )
        for rank, (value, row) in enumerate(zip(latent_values, latent_rows, strict=True))
        if value > 0
    ]


def _stats(
    counts: Tensor, by_label: Tensor, maxima: Tensor, label_names: list[str], num_rows: int
) -> list[LatentStats]:
    fires = counts.sum(1).tolist()
    stats = []
    for latent, top in enumerate(maxima.tolist()):
        edges = torch.linspace(0.0, top, HISTOGRAM_BINS + 1).tolist() if fires[latent] else []
        per_label = by_label[:, latent].tolist()
        stats.append(
            LatentStats(
                fires=int(fires[latent]),
                rows=num_rows,
                histogram_edges=edges,
                histogram_counts=counts[latent].tolist() if fires[latent] else [],
                label_counts={name: int(n) for name, n in zip(label_names, per_label, strict=True) if n},
            )
        )
    return stats
