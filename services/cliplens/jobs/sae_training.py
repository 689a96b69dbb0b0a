"""Training an SAE on a stored activation run and saving it into the store's SAE catalog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cliplens.core.sae import Sae, build_sae, make_config
from cliplens.core.sae.train import EpochMetrics, TrainConfig, evaluate_sae, train_sae
from cliplens.store.objects import ObjectStore
from cliplens.store.run_reader import ActivationRun
from cliplens.store.saes import SaeRecord, check_sae_id, save_sae_to_store


@dataclass(frozen=True)
class SaeJob:
    """Which SAE to train on which run: ``fields`` are the architecture's own config fields."""

    run_id: str
    sae_id: str
    arch: str
    d_sae: int
    fields: dict[str, Any]
    train: TrainConfig
    batch_size: int = 1024
    buffer_rows: int = 65536


def train_sae_on_run(store: ObjectStore, job: SaeJob) -> tuple[Sae, SaeRecord, list[EpochMetrics]]:
    """Train on shuffled batches streamed from the run, evaluate on every row, save to the catalog.

    The config records the run's model and site, and the run id as ``dataset_id``. ``job.train.seed``
    fixes the SAE init, the batch order and any randomness in training, so the same job on the same
    run gives bit-identical weights on CPU.
    """
    check_sae_id(job.sae_id)
    run = ActivationRun(store, job.run_id)
    cfg = make_config(
        job.arch,
        d_in=run.row_shape[-1],
        d_sae=job.d_sae,
        model_id=str(run.manifest.spec["model_id"]),
        site=str(run.manifest.spec["site"]),
        dataset_id=run.run_id,
        **job.fields,
    )
    sae = build_sae(cfg, seed=job.train.seed)
    source = run.training_batches(job.batch_size, max(job.buffer_rows, job.batch_size), seed=job.train.seed)
    history = train_sae(sae, source, job.train)
    metrics = evaluate_sae(sae, source).as_dict()
    metrics["final_train_loss"] = history[-1].loss
    return sae, save_sae_to_store(store, job.sae_id, sae, metrics), history
