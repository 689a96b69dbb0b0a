"""SAE sweeps: several SAEs trained together on one read of a stored activation run.

Each shuffled batch is read once and every SAE takes its step on it. Without GPUs the SAEs train in
this process (:func:`cliplens.core.sae.train.train_saes`). When the Ray cluster has GPUs, one actor
per GPU holds a share of the SAEs (a :class:`~cliplens.core.sae.train.SaeGroupTrainer`), and each
batch goes into the object store once (``ray.put``) for every actor to read.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import ray
import torch
from torch import Tensor
from tqdm.auto import tqdm

from cliplens.core.errors import InvalidInputError
from cliplens.core.sae import Sae, SaeConfig, build_sae
from cliplens.core.sae.metrics import SaeMetrics
from cliplens.core.sae.train import (
    EpochMetrics,
    SaeGroupTrainer,
    evaluate_saes,
    first_batches,
    train_saes,
)
from cliplens.jobs.ray_cluster import ADDRESS_ENV, ray_cluster
from cliplens.jobs.sae_training import SaeJob, sae_config, save_trained, training_batches
from cliplens.store.objects import ObjectStore
from cliplens.store.run_reader import ActivationRun
from cliplens.store.saes import SaeRecord, check_sae_id

Trained = tuple[Sae, SaeRecord, list[EpochMetrics]]
# Batches each actor may have queued before the reader waits (bounds the object store's use).
MAX_BATCHES_IN_FLIGHT = 8
# What the jobs of a sweep share, so that one read of the run feeds them all.
SHARED: dict[str, Callable[[SaeJob], Any]] = {
    "run_id": lambda job: job.run_id,
    "batch_size": lambda job: job.batch_size,
    "buffer_rows": lambda job: job.buffer_rows,
    "epochs": lambda job: job.train.epochs,
    "the batch-order seed (order_seed, else train.seed)": lambda job: job.batch_seed,
    "train.scale_fit_batches": lambda job: job.train.scale_fit_batches,
    "train.device": lambda job: job.train.device,
}


def train_sweep_on_run(
    store: ObjectStore, jobs: Sequence[SaeJob], *, address: str | None = None
) -> list[Trained]:
    """Train every job's SAE on one read of their run, save each into the catalog with its metrics.

    The jobs must share :data:`SHARED` (run, batch size, shuffle buffer, epochs, batch order, ...).
    Each SAE is initialised from its own ``train.seed``, so on CPU it ends bit-identical to
    :func:`~cliplens.jobs.sae_training.train_sae_on_run` of its job alone with the same batch order.
    When the Ray cluster (``address``, ``$RAY_ADDRESS``, the session's, or a local one when this
    machine has a GPU) has GPUs and the jobs' device is not ``cpu``, one actor per GPU trains a
    share of the SAEs; otherwise they train in this process. Returns the jobs' results in order.
    """
    sweep = _Sweep(store, jobs)
    if not _may_have_gpus(address, jobs[0].train.device):
        return sweep.in_process()
    with ray_cluster(address):
        gpus = int(ray.cluster_resources().get("GPU", 0))
        return sweep.on_actors(min(gpus, len(jobs)), 1.0) if gpus else sweep.in_process()


def train_sweep_on_actors(
    store: ObjectStore,
    jobs: Sequence[SaeJob],
    *,
    actors: int,
    gpus_per_actor: float = 1.0,
    address: str | None = None,
) -> list[Trained]:
    """:func:`train_sweep_on_run` on ``actors`` Ray actors with ``gpus_per_actor`` GPUs each (0: on CPU)."""
    if actors < 1 or gpus_per_actor < 0:
        raise InvalidInputError(
            f"need actors >= 1 and gpus_per_actor >= 0, got {actors} and {gpus_per_actor}"
        )
    sweep = _Sweep(store, jobs)
    with ray_cluster(address):
        return sweep.on_actors(actors, gpus_per_actor)


def _may_have_gpus(address: str | None, device: str) -> bool:
    """Whether the cluster the sweep would use may have GPUs (without starting a local one)."""
    if device == "cpu":
        return False
    if address or os.environ.get(ADDRESS_ENV) or ray.is_initialized():
        return True
    return torch.cuda.is_available()


class _Sweep:
    """The checked jobs of a sweep, their freshly initialised SAEs and the run's shuffled batches."""

    def __init__(self, store: ObjectStore, jobs: Sequence[SaeJob]) -> None:
        if not jobs:
            raise InvalidInputError("a sweep needs at least one SAE job")
        ids = [check_sae_id(job.sae_id) for job in jobs]
        repeated = sorted({sae_id for sae_id in ids if ids.count(sae_id) > 1})
        if repeated:
            raise InvalidInputError(f"a sweep's SAE ids must differ; repeated: {', '.join(repeated)}")
        for name, value in SHARED.items():
            values = {job.sae_id: value(job) for job in jobs}
            if len(set(values.values())) > 1:
                raise InvalidInputError(
                    f"the SAEs of a sweep are fed by one read of the activations, so they must share "
                    f"{name}; got {values}"
                )
        self.store, self.jobs = store, list(jobs)
        run = ActivationRun(store, jobs[0].run_id)
        self.saes = [build_sae(self._config(run, job), seed=job.train.seed) for job in jobs]
        self.source = training_batches(run, jobs[0])
        self.cfgs = [job.train for job in jobs]

    @staticmethod
    def _config(run: ActivationRun, job: SaeJob) -> SaeConfig:
        try:
            return sae_config(run, job)
        except InvalidInputError as exc:
            raise InvalidInputError(f"SAE '{job.sae_id}': {exc}") from None

    def in_process(self) -> list[Trained]:
        histories = train_saes(self.saes, self.source, self.cfgs)
        return self._save(self.saes, histories, evaluate_saes(self.saes, self.source))

    def on_actors(self, actors: int, gpus_per_actor: float) -> list[Trained]:
        """Round-robin shares of the SAEs on ``actors`` actors; every batch is put once and sent to all."""
        shares = [list(range(first, len(self.jobs), actors)) for first in range(min(actors, len(self.jobs)))]
        sample = ray.put(first_batches(self.source, self.cfgs[0].scale_fit_batches))
        group = ray.remote(SaeGroupTrainer).options(num_cpus=1, num_gpus=gpus_per_actor)
        workers: list[Any] = [  # Ray actor handles
            group.remote(
                [self.saes[i] for i in share],
                [self.cfgs[i] for i in share],
                sample,
                len(self.source),
                "cuda" if gpus_per_actor > 0 else "cpu",
            )
            for share in shares
        ]
        histories: list[list[EpochMetrics]] = [[] for _ in self.jobs]
        epochs = self.cfgs[0].epochs
        for epoch in range(1, epochs + 1):
            self._broadcast(
                lambda ref: [w.train_batch.remote(ref) for w in workers], f"sae epoch {epoch}/{epochs}"
            )
            for share, records in zip(
                shares, ray.get([w.end_epoch.remote(epoch) for w in workers]), strict=True
            ):
                for i, record in zip(share, records, strict=True):
                    histories[i].append(record)
        self._broadcast(lambda ref: [w.evaluate_batch.remote(ref) for w in workers], "sae evaluation")
        evaluated: dict[int, tuple[Sae, SaeMetrics]] = {}
        for share, (trained, values) in zip(
            shares, ray.get([w.evaluated.remote() for w in workers]), strict=True
        ):
            evaluated.update(zip(share, zip(trained, values, strict=True), strict=True))
        saes, metrics = zip(*(evaluated[i] for i in range(len(self.jobs))), strict=True)
        return self._save(list(saes), histories, list(metrics))

    def _broadcast(
        self, send: Callable[[ray.ObjectRef[Tensor]], list[ray.ObjectRef[None]]], desc: str
    ) -> None:
        """Put each batch of one read into the object store once and ``send`` it to every actor."""
        pending: deque[list[ray.ObjectRef[None]]] = deque()
        bar = tqdm(
            self.source, total=len(self.source), desc=desc, disable=not any(c.progress for c in self.cfgs)
        )
        for batch in bar:
            pending.append(send(ray.put(batch)))
            if len(pending) > MAX_BATCHES_IN_FLIGHT:
                ray.get(pending.popleft())
        ray.get([ref for refs in pending for ref in refs])

    def _save(
        self, saes: list[Sae], histories: list[list[EpochMetrics]], metrics: list[SaeMetrics]
    ) -> list[Trained]:
        return [
            (sae, save_trained(self.store, job, sae, values, history), history)
            for job, sae, history, values in zip(self.jobs, saes, histories, metrics, strict=True)
        ]
