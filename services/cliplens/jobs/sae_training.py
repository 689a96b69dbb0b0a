"""Training an SAE on a stored activation run and saving it into the store's SAE catalog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cliplens.core.sae import Sae, SaeConfig, build_sae, make_config
from cliplens.core.sae.metrics import SaeMetrics
from cliplens.core.sae.train import EpochMetrics, TrainConfig, evaluate_sae, train_sae
from cliplens.store.objects import ObjectStore
from cliplens.store.run_reader import ActivationRun, ShuffledBatches
from cliplens.store.saes import SaeRecord, check_sae_id, save_sae_to_store


@dataclass(frozen=True)
class SaeJob:
    """Which SAE to train on which run: ``fields`` are the architecture's own config fields.

    ``train.seed`` fixes the SAE init and any randomness in training; ``order_seed`` the order of
    the training batches (``None``: ``train.seed`` too).
    """

    run_id: str
    sae_id: str
    arch: str
    d_sae: int
    fields: dict[str, Any]
    train: TrainConfig
    batch_size: int = 1024
    buffer_rows: int = 65536
    order_seed: int | None = None

    @property
    def batch_seed(self) -> int:
        """The seed of the batch order."""
        return self.train.seed if self.order_seed is None else self.order_seed


def train_sae_on_run(store: ObjectStore, job: SaeJob) -> tuple[Sae, SaeRecord, list[EpochMetrics]]:
    """Train on shuffled batches streamed from the run, evaluate on every row, save to the catalog.

    The config records the run's model and site, and the run id as ``dataset_id``. ``job.train.seed``
    fixes the SAE init, the batch order and any randomness in training, so the same job on the same
    run gives bit-identical weights on CPU.
    """
    check_sae_id(job.sae_id)
    run = ActivationRun(store, job.run_id)
    sae = build_sae(sae_config(run, job), seed=job.train.seed)
    source = training_batches(run, job)
    history = train_sae(sae, source, job.train)
    return sae, save_trained(store, job, sae, evaluate_sae(sae, source), history), history


def sae_config(run: ActivationRun, job: SaeJob) -> SaeConfig:
    """``job``'s SAE config on ``run``: its width, model and site, and the run id as ``dataset_id``."""
    return make_config(
        job.arch,
        d_in=run.row_shape[-1],
        d_sae=job.d_sae,
        model_id=str(run.manifest.spec["model_id"]),
        site=str(run.manifest.spec["site"]),
        dataset_id=run.run_id,
        **job.fields,
    )


def training_batches(run: ActivationRun, job: SaeJob) -> ShuffledBatches:
    """``job``'s shuffled training batches of ``run`` (in the order its :attr:`SaeJob.batch_seed` gives)."""
    return run.training_batches(job.batch_size, max(job.buffer_rows, job.batch_size), seed=job.batch_seed)


def save_trained(
    store: ObjectStore, job: SaeJob, sae: Sae, metrics: SaeMetrics, history: list[EpochMetrics]
) -> SaeRecord:
    """Save a trained SAE with its evaluation metrics and final training loss into the catalog."""
    values = metrics.as_dict()
    values["final_train_loss"] = history[-1].loss
    return save_sae_to_store(store, job.sae_id, sae, values)
