"""SAE sweeps on a real run of the demo model: one read trains every SAE exactly as training it alone
would, in-process and on Ray actors, and each lands in the catalog with its metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from job_helpers import extracted_final_run

from cliplens.cli import main
from cliplens.core.errors import InvalidInputError
from cliplens.core.sae.train import TrainConfig
from cliplens.jobs.sae_sweep import Trained, train_sweep_on_actors, train_sweep_on_run
from cliplens.jobs.sae_training import SaeJob, train_sae_on_run
from cliplens.store import LocalStore, list_saes, load_sae_from_store

IMAGES = 384
TRAIN = TrainConfig(epochs=2, warmup_steps=5, device="cpu", progress=False)


@pytest.fixture(scope="module")
def run(
    ray_session: None, cifar_sample: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[LocalStore, str]:
    """The demo model's final embeddings of 384 CIFAR-10 images, in 4 shards (so shard order is shuffled too)."""
    return extracted_final_run(cifar_sample, tmp_path_factory.mktemp("sae-sweep"), IMAGES, 96, 96)


def jobs_on(run_id: str) -> list[SaeJob]:
    """Three architectures; the last has its own init seed and keeps the sweep's batch order (seed 0)."""
    common = {"run_id": run_id, "d_sae": 256, "train": TRAIN, "batch_size": 32, "buffer_rows": 128}
    return [
        SaeJob(sae_id="sweep-topk", arch="topk", fields={"k": 8, "aux_k": 32}, **common),
        SaeJob(sae_id="sweep-relu", arch="relu", fields={"l1_coeff": 3e-3}, **common),
        SaeJob(
            sae_id="sweep-batchtopk",
            arch="batchtopk",
            fields={"k": 8},
            order_seed=0,
            **{**common, "train": dataclasses.replace(TRAIN, seed=1)},
        ),
    ]


@pytest.fixture(scope="module")
def swept(run: tuple[LocalStore, str]) -> list[Trained]:
    store, run_id = run
    return train_sweep_on_run(store, jobs_on(run_id))


def test_each_sae_of_a_sweep_equals_training_it_alone(
    run: tuple[LocalStore, str], swept: list[Trained]
) -> None:
    store, run_id = run
    for job, (sae, record, history) in zip(jobs_on(run_id), swept, strict=True):
        alone, alone_record, alone_history = train_sae_on_run(
            store, dataclasses.replace(job, sae_id=f"{job.sae_id}-alone")
        )
        mine, theirs = sae.state_dict(), alone.state_dict()
        assert [name for name in mine if not torch.equal(mine[name], theirs[name])] == [], job.sae_id
        assert record.metrics == alone_record.metrics
        assert [e.loss for e in history] == [e.loss for e in alone_history]


def test_every_sae_of_a_sweep_is_in_the_catalog_with_its_metrics(
    run: tuple[LocalStore, str], swept: list[Trained]
) -> None:
    store, run_id = run
    catalog = {record.sae_id: record for record in list_saes(store)}
    for job, (sae, record, _) in zip(jobs_on(run_id), swept, strict=True):
        stored = catalog[job.sae_id]
        assert stored.run_id == run_id and stored.cfg == sae.cfg and stored.metrics == record.metrics
        assert stored.metrics["rows"] == IMAGES and stored.metrics["r2"] > 0.3
        assert set(stored.metrics) >= {"l0", "r2", "dead_fraction", "final_train_loss"}
        loaded = load_sae_from_store(store, job.sae_id).sae.state_dict()
        assert all(torch.equal(value, sae.state_dict()[name]) for name, value in loaded.items())


def test_ray_actors_train_the_same_saes(run: tuple[LocalStore, str], swept: list[Trained]) -> None:
    """Two CPU actors, each holding a share of the SAEs and reading every batch from the object store."""
    store, run_id = run
    jobs = [dataclasses.replace(job, sae_id=f"{job.sae_id}-actors") for job in jobs_on(run_id)]
    on_actors = train_sweep_on_actors(store, jobs, actors=2, gpus_per_actor=0)
    for (sae, record, _), (theirs, their_record, _) in zip(on_actors, swept, strict=True):
        for name, value in sae.state_dict().items():
            torch.testing.assert_close(value, theirs.state_dict()[name], rtol=0, atol=1e-6)
        assert record.metrics["r2"] == pytest.approx(their_record.metrics["r2"], abs=1e-6)


def test_a_sweep_refuses_jobs_that_one_read_cannot_feed(run: tuple[LocalStore, str]) -> None:
    store, run_id = run
    first, second, _ = jobs_on(run_id)
    with pytest.raises(InvalidInputError, match="must share epochs; got {'sweep-topk': 2, 'sweep-relu': 3}"):
        train_sweep_on_run(
            store, [first, dataclasses.replace(second, train=dataclasses.replace(TRAIN, epochs=3))]
        )
    with pytest.raises(InvalidInputError, match="must share batch_size"):
        train_sweep_on_run(store, [first, dataclasses.replace(second, batch_size=64)])
    with pytest.raises(InvalidInputError, match="must share the batch-order seed"):
        train_sweep_on_run(
            store, [first, dataclasses.replace(second, train=dataclasses.replace(TRAIN, seed=5))]
        )
    with pytest.raises(InvalidInputError, match="repeated: sweep-topk"):
        train_sweep_on_run(store, [first, first])


def test_the_command_trains_a_sweep_file_and_prints_its_table(
    run: tuple[LocalStore, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, run_id = run
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "epochs: 2\nwarmup_steps: 5\nbatch_size: 32\nbuffer_rows: 128\nd_sae: 256\ndevice: cpu\narch: topk\n"
        "saes:\n  - {sae_id: cli-k8, k: 8}\n  - {sae_id: cli-k16, k: 16}\n  - {sae_id: cli-relu, arch: relu, l1_coeff: 3e-3}\n"
    )
    assert main(["train-sae", "--store", store.uri, "--run", run_id, "--sweep", str(sweep)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"train-sae: sweep {sweep}: 3 SAEs trained on one read of run {run_id}")
    assert lines[1].split() == [
        "sae",
        "id",
        "arch",
        "d_sae",
        "k",
        "/",
        "l1",
        "L0",
        "R²",
        "dead",
        "final",
        "loss",
        "seconds",
    ]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows.keys() == {"cli-k8", "cli-k16", "cli-relu"}
    assert rows["cli-k8"][1:5] == ["topk", "256", "k=8", "8.00"] and rows["cli-relu"][1:4] == [
        "relu",
        "256",
        "l1=0.003",
    ]
    catalog = {record.sae_id: record for record in list_saes(store)}
    for sae_id, row in rows.items():
        assert row[5] == f"{catalog[sae_id].metrics['r2']:.4f}"
