"""SAE training: Adam with warm-up and cosine decay, streaming over batches of activations.

The data source is any re-iterable of ``(batch, d_in)`` tensors with a length (batches per epoch),
so an in-memory tensor, a local shard reader and an object-store reader plug in the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.models import resolve_device
from cliplens.core.sae.metrics import MetricAccumulator, SaeMetrics
from cliplens.core.sae.modules import Sae


class ActivationSource(Protocol):
    """Batches of activations; iterating again starts a new epoch."""

    def __iter__(self) -> Iterator[Tensor]: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class TrainConfig:
    """How to train an SAE.

    ``seed`` (fixed default 0): the same command on the same data gives the same SAE on CPU. It
    seeds the SAE init (``build_sae(cfg, seed=...)``) and the order of the training batches
    (``ActivationRun.training_batches(..., seed=...)``) in :func:`cliplens.jobs.sae_training.train_sae_on_run`,
    and :func:`train_sae` runs under torch's global RNG seeded with it (restored afterwards), so
    anything random during training is fixed too. On CUDA the result can still differ in the last
    bits from run to run (non-deterministic kernels).
    """

    epochs: int = 5
    lr: float = 1e-3
    warmup_steps: int = 100
    final_lr_fraction: float = 0.1
    dead_after_rows: int = 20_000
    scale_fit_batches: int = 8
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.lr <= 0 or self.warmup_steps < 0:
            raise InvalidInputError(f"invalid training config: {self}")


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    loss: float
    metrics: SaeMetrics


class TensorBatches:
    """An in-memory :class:`ActivationSource`: shuffled mini-batches of a ``(rows, d_in)`` tensor."""

    def __init__(self, rows: Tensor, batch_size: int, *, shuffle: bool = True, seed: int = 0) -> None:
        if rows.ndim != 2 or rows.shape[0] == 0:
            raise InvalidInputError(
                f"activations must be a non-empty (rows, d_in) tensor, got {tuple(rows.shape)}"
            )
        self.rows, self.batch_size, self.shuffle = rows, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(self.rows.shape[0] / self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        n = self.rows.shape[0]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            yield self.rows[order[start : start + self.batch_size]]


def lr_factor(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine decay to ``final_lr_fraction``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return cfg.final_lr_fraction + (1 - cfg.final_lr_fraction) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, progress))
    )


@torch.no_grad()
def fit_input_scale(sae: Sae, source: ActivationSource, batches: int) -> None:
    """Set ``input_scale`` so scaled inputs have mean squared norm ``d_in``; ``b_pre`` to their mean."""
    seen: list[Tensor] = []
    for i, batch in enumerate(source):
        seen.append(batch.float())
        if i + 1 >= batches:
            break
    sample = torch.cat(seen).to(sae.W_dec.device)
    if sample.shape[-1] != sae.cfg.d_in:
        raise ShapeMismatchError(f"SAE d_in={sae.cfg.d_in} but the activations have width {sample.shape[-1]}")
    scale = math.sqrt(sae.cfg.d_in / float(sample.pow(2).sum(-1).mean().clamp_min(1e-12)))
    sae.input_scale.fill_(scale)
    sae.b_pre.copy_(sample.mean(0) * scale)


def train_sae(
    sae: Sae,
    source: ActivationSource,
    cfg: TrainConfig,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> list[EpochMetrics]:
    """Train ``sae`` in place and return per-epoch metrics (computed on the training batches).

    Training draws any random numbers from torch's global RNG seeded with ``cfg.seed`` inside a
    forked scope, so the caller's RNG state is the same afterwards.
    """
    device = resolve_device(cfg.device)
    with seeded_rng(cfg.seed, device):
        return _train(sae, source, cfg, device, on_epoch)


@contextmanager
def seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global CPU RNG (and ``device``'s, if CUDA) for the block; restore them after."""
    cuda = device.type == "cuda"
    index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda else 0
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def _train(
    sae: Sae,
    source: ActivationSource,
    cfg: TrainConfig,
    device: torch.device,
    on_epoch: Callable[[EpochMetrics], None] | None,
) -> list[EpochMetrics]:
    sae.to(device).train()
    fit_input_scale(sae, source, cfg.scale_fit_batches)
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    total_steps = cfg.epochs * len(source)
    rows_since_fired = torch.zeros(sae.cfg.d_sae, dtype=torch.long, device=device)
    history: list[EpochMetrics] = []
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        accumulator = MetricAccumulator(sae.cfg.d_in, sae.cfg.d_sae)
        loss_sum = 0.0
        bar = tqdm(
            source, total=len(source), desc=f"sae epoch {epoch}/{cfg.epochs}", disable=not cfg.progress
        )
        for batch in bar:
            x = batch.to(device, torch.float32)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, total_steps, cfg)
            out = sae.loss(x, dead=rows_since_fired >= cfg.dead_after_rows)
            optimizer.zero_grad(set_to_none=True)
            out.total.backward()
            sae.remove_parallel_grads()
            optimizer.step()
            sae.normalize_decoder()
            fired = (out.z != 0).any(0)
            rows_since_fired = torch.where(
                fired, torch.zeros_like(rows_since_fired), rows_since_fired + x.shape[0]
            )
            sae.after_batch(out.z.detach())
            accumulator.update(x, out.x_hat, out.z)
            loss_sum += float(out.total.detach())
            step += 1
            if step % 20 == 0:
                bar.set_postfix(
                    loss=f"{float(out.total.detach()):.4f}",
                    l0=f"{float((out.z != 0).sum(-1).float().mean()):.1f}",
                )
        record = EpochMetrics(epoch, loss_sum / max(1, len(source)), accumulator.result())
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    sae.eval()
    return history


@torch.no_grad()
def evaluate_sae(sae: Sae, source: ActivationSource) -> SaeMetrics:
    """Metrics of ``sae`` (in eval mode) over every batch of ``source``."""
    sae.eval()
    accumulator = MetricAccumulator(sae.cfg.d_in, sae.cfg.d_sae)
    device = sae.W_dec.device
    for batch in source:
        x = batch.to(device, torch.float32)
        z = sae.encode(x)
        accumulator.update(x, sae.decode(z), z)
    return accumulator.result()
