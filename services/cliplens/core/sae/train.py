"""SAE training: Adam with warm-up and cosine decay, streaming over batches of activations.

The data source is any re-iterable of ``(batch, d_in)`` tensors with a length (batches per epoch),
so an in-memory tensor, a local shard reader and an object-store reader plug in the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
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
    and each SAE trains with torch's global RNG seeded with it (the caller's state is restored), so
    anything random during training is fixed too. On CUDA the result can still differ in the last
    bits from run to run (non-deterministic kernels). ``epochs``, ``scale_fit_batches`` and
    ``device`` must be the same for SAEs trained together (:func:`train_saes`).
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
    """One SAE's epoch: mean training loss, metrics on the training batches, and ``seconds`` spent
    in its own training steps (reading the batches not included)."""

    epoch: int
    loss: float
    metrics: SaeMetrics
    seconds: float


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


def first_batches(source: ActivationSource, batches: int) -> Tensor:
    """The first ``batches`` batches of ``source`` in one float32 tensor (the input-scale fit's sample)."""
    seen: list[Tensor] = []
    for i, batch in enumerate(source):
        seen.append(batch.float())
        if i + 1 >= batches:
            break
    return torch.cat(seen)


@torch.no_grad()
def fit_input_scale(sae: Sae, sample: Tensor) -> None:
    """Set ``input_scale`` so scaled inputs have mean squared norm ``d_in``; ``b_pre`` to their mean."""
    sample = sample.to(sae.W_dec.device, torch.float32)
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

    Training draws any random numbers from torch's global RNG seeded with ``cfg.seed``, in a scope
    that restores the caller's RNG state afterwards.
    """
    report = None if on_epoch is None else (lambda records: on_epoch(records[0]))
    return train_saes([sae], source, [cfg], report)[0]


# TrainConfig fields that SAEs trained together must share: they decide what is read, and where.
SHARED_TRAIN_FIELDS = ("epochs", "scale_fit_batches", "device")


def check_shared(cfgs: Sequence[TrainConfig]) -> None:
    """Raise unless ``cfgs`` is non-empty and agrees on :data:`SHARED_TRAIN_FIELDS`."""
    if not cfgs:
        raise InvalidInputError("no SAEs to train")
    for name in SHARED_TRAIN_FIELDS:
        values = [getattr(cfg, name) for cfg in cfgs]
        if len(set(values)) > 1:
            raise InvalidInputError(f"SAEs trained on the same batches must share {name}, got {values}")


def train_saes(
    saes: Sequence[Sae],
    source: ActivationSource,
    cfgs: Sequence[TrainConfig],
    on_epoch: Callable[[list[EpochMetrics]], None] | None = None,
) -> list[list[EpochMetrics]]:
    """Train several SAEs in place on one read of ``source``: each batch is read once and every SAE
    takes its step on it. Returns each SAE's per-epoch metrics.

    ``cfgs[i]`` trains ``saes[i]``; they must share :data:`SHARED_TRAIN_FIELDS`. Each SAE keeps its
    own optimiser, schedule and RNG stream (seeded with its ``seed``), so each ends exactly as
    :func:`train_sae` alone on the same batches would leave it (bit-identical on CPU).
    """
    if len(saes) != len(cfgs):
        raise InvalidInputError(f"{len(saes)} SAEs but {len(cfgs)} training configs")
    check_shared(cfgs)
    epochs, device = cfgs[0].epochs, resolve_device(cfgs[0].device)
    group = SaeGroupTrainer(saes, cfgs, first_batches(source, cfgs[0].scale_fit_batches), len(source), device)
    history: list[list[EpochMetrics]] = [[] for _ in saes]
    for epoch in range(1, epochs + 1):
        bar = tqdm(
            source,
            total=len(source),
            desc=f"sae epoch {epoch}/{epochs}",
            disable=not any(cfg.progress for cfg in cfgs),
        )
        for step, batch in enumerate(bar, 1):
            group.train_batch(batch)
            if step % 20 == 0:
                bar.set_postfix(group.progress())
        records = group.end_epoch(epoch)
        for past, record in zip(history, records, strict=True):
            past.append(record)
        if on_epoch is not None:
            on_epoch(records)
    for sae in saes:
        sae.eval()
    return history


class SaeGroupTrainer:
    """Several SAEs trained on the same batches, each with its own optimiser, learning-rate schedule,
    dead-latent counts, RNG stream and epoch metrics.

    :func:`train_saes` drives one in-process; a sweep can hold one per Ray actor (``ray.remote``),
    feeding each the same batches. ``sample`` (:func:`first_batches`) fits every SAE's input scale.
    """

    def __init__(
        self,
        saes: Sequence[Sae],
        cfgs: Sequence[TrainConfig],
        sample: Tensor,
        steps_per_epoch: int,
        device: torch.device | str,
    ) -> None:
        self.device = torch.device(device)
        self.trainers = [
            _Trainer(sae, cfg, sample, steps_per_epoch, self.device)
            for sae, cfg in zip(saes, cfgs, strict=True)
        ]
        self.cuda_devices = [_cuda_index(self.device)] if self.device.type == "cuda" else []
        self.evaluation: Evaluation | None = None

    def train_batch(self, batch: Tensor) -> None:
        """One optimiser step of every SAE on ``batch``; torch's global RNG is left as it was."""
        x = batch.to(self.device, torch.float32)
        with torch.random.fork_rng(devices=self.cuda_devices):
            for trainer in self.trainers:
                trainer.train_step(x)

    def end_epoch(self, epoch: int) -> list[EpochMetrics]:
        """Each SAE's metrics over the epoch's batches; the next batch starts a new epoch."""
        return [trainer.end_epoch(epoch) for trainer in self.trainers]

    def progress(self) -> dict[str, str]:
        """Each SAE's mean loss and L0 so far this epoch, for a progress bar."""
        return {
            "loss": "/".join(f"{t.loss_sum / max(1, t.batches):.4f}" for t in self.trainers),
            "l0": "/".join(f"{t.accumulator.l0_sum / max(1, t.accumulator.rows):.1f}" for t in self.trainers),
        }

    def evaluate_batch(self, batch: Tensor) -> None:
        """Add ``batch`` to the evaluation of the trained SAEs (in eval mode from the first call)."""
        if self.evaluation is None:
            self.evaluation = Evaluation([trainer.sae for trainer in self.trainers])
        self.evaluation.update(batch)

    def evaluated(self) -> tuple[list[Sae], list[SaeMetrics]]:
        """The SAEs (moved to the CPU) and their metrics over the batches given to :meth:`evaluate_batch`."""
        if self.evaluation is None:
            raise InvalidInputError("evaluated() before any evaluate_batch()")
        return [trainer.sae.cpu() for trainer in self.trainers], self.evaluation.result()


class _Trainer:
    """One SAE's training state inside a :class:`SaeGroupTrainer`."""

    def __init__(
        self, sae: Sae, cfg: TrainConfig, sample: Tensor, steps_per_epoch: int, device: torch.device
    ) -> None:
        self.sae, self.cfg, self.device = sae, cfg, device
        self.total_steps = cfg.epochs * steps_per_epoch
        sae.to(device).train()
        fit_input_scale(sae, sample)
        self.optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
        self.rows_since_fired = torch.zeros(sae.cfg.d_sae, dtype=torch.long, device=device)
        with seeded_rng(cfg.seed, device):
            self.rng = _rng_state(device)
        self.step = 0
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.accumulator = MetricAccumulator(self.sae.cfg.d_in, self.sae.cfg.d_sae)
        self.loss_sum, self.batches, self.seconds = 0.0, 0, 0.0

    def train_step(self, x: Tensor) -> None:
        """One step on ``x`` (float32, on the device) drawing from this SAE's own RNG stream."""
        started = time.perf_counter()
        _set_rng_state(self.rng, self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr * lr_factor(self.step, self.total_steps, self.cfg)
        sae = self.sae
        out = sae.loss(x, dead=self.rows_since_fired >= self.cfg.dead_after_rows)
        self.optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        sae.remove_parallel_grads()
        self.optimizer.step()
        sae.normalize_decoder()
        fired = (out.z != 0).any(0)
        self.rows_since_fired = torch.where(
            fired, torch.zeros_like(self.rows_since_fired), self.rows_since_fired + x.shape[0]
        )
        sae.after_batch(out.z.detach())
        self.accumulator.update(x, out.x_hat, out.z)
        self.loss_sum += float(out.total.detach())
        self.rng = _rng_state(self.device)
        self.step += 1
        self.batches += 1
        self.seconds += time.perf_counter() - started

    def end_epoch(self, epoch: int) -> EpochMetrics:
        record = EpochMetrics(
            epoch, self.loss_sum / max(1, self.batches), self.accumulator.result(), self.seconds
        )
        self._new_epoch()
        return record


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def _rng_state(device: torch.device) -> tuple[Tensor, ...]:
    """Torch's global CPU RNG state (and ``device``'s, if CUDA)."""
    if device.type == "cuda":
        return torch.get_rng_state(), torch.cuda.get_rng_state(_cuda_index(device))
    return (torch.get_rng_state(),)


def _set_rng_state(state: tuple[Tensor, ...], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state[1], _cuda_index(device))


@contextmanager
def seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global CPU RNG (and ``device``'s, if CUDA) for the block; restore them after."""
    cuda = device.type == "cuda"
    index = _cuda_index(device) if cuda else 0
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


class Evaluation:
    """Metrics of several SAEs (put in eval mode) accumulated batch by batch."""

    def __init__(self, saes: Sequence[Sae]) -> None:
        self.saes = list(saes)
        for sae in self.saes:
            sae.eval()
        self.accumulators = [MetricAccumulator(sae.cfg.d_in, sae.cfg.d_sae) for sae in self.saes]

    @torch.no_grad()
    def update(self, batch: Tensor) -> None:
        on_device: dict[torch.device, Tensor] = {}
        for sae, accumulator in zip(self.saes, self.accumulators, strict=True):
            device = sae.W_dec.device
            if device not in on_device:
                on_device[device] = batch.to(device, torch.float32)
            x = on_device[device]
            z = sae.encode(x)
            accumulator.update(x, sae.decode(z), z)

    def result(self) -> list[SaeMetrics]:
        return [accumulator.result() for accumulator in self.accumulators]


def evaluate_saes(saes: Sequence[Sae], source: ActivationSource) -> list[SaeMetrics]:
    """Metrics of each SAE (in eval mode) over every batch of ``source``, read once."""
    evaluation = Evaluation(saes)
    for batch in source:
        evaluation.update(batch)
    return evaluation.result()


def evaluate_sae(sae: Sae, source: ActivationSource) -> SaeMetrics:
    """Metrics of ``sae`` (in eval mode) over every batch of ``source``."""
    return evaluate_saes([sae], source)[0]
