"""The batch jobs on a real multi-node Ray cluster (tests/ray_nodes.py): a CPU-less head and two worker
raylets with 1 CPU each on this machine, token authentication on.

- ``cliplens extract --address`` (the CLI in a subprocess) and the same command through ``ray job submit``
  run their CPU work on both worker nodes and none on the head, and store exactly the in-process forward.
- A worker node killed once the job has committed a shard (SIGKILL of every process of that raylet; a
  replacement node joins, as KubeRay would recreate the pod): the job, or its re-run with the same
  command, ends with each input exactly once and the activations of the in-process forward.
- ``cliplens train-sae`` and ``cliplens topk`` as jobs submitted to the cluster, on the extracted run.

The tests read the store only through the public API (:class:`ActivationRun`), so they hold for any way
the extract job splits its work between the driver and the workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import pytest
import torch
from job_helpers import cifar_subset, reference_activations

from cliplens.core.models import LoadedClip
from cliplens.store import ActivationRun, LocalStore
from cliplens.store.saes import read_sae_record
from ray_nodes import RayNodes, end_session, wait_for

CLIPLENS = str(Path(sys.executable).with_name("cliplens"))
RAY = str(Path(sys.executable).with_name("ray"))
WORKERS = {"a": {"CPU": 1, "cliplens_worker_a": 1}, "b": {"CPU": 1, "cliplens_worker_b": 1}}
JOB_TIMEOUT_S = 240
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayNodes]:
    nodes = RayNodes()
    try:
        yield nodes.start(WORKERS)
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def images(cifar_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cifar_subset(cifar_sample, tmp_path_factory.mktemp("inputs"), 256)


@pytest.fixture(scope="module")
def reference(demo_clip: LoadedClip, images: Path) -> tuple[list[str], torch.Tensor]:
    """Keys and final-site activations of every input, from one in-process forward of the demo model."""
    return reference_activations(demo_clip, images, "final")


def extract_args(images: Path, store: Path, rows_per_shard: int = 32, batch_size: int = 16) -> list[str]:
    # One encoder actor asking 1 CPU fills one worker node; the read/decode tasks (1 CPU each) can then
    # run only on the other one: both nodes work, the head (0 CPUs) runs neither.
    return [
        "extract", str(images), "--store", str(store), "--model", "demo", "--site", "final",
        "--dataset-id", "cifar-multinode", "--rows-per-shard", str(rows_per_shard),
        "--batch-size", str(batch_size), "--decode-batch-size", str(batch_size), "--encoders", "1",
    ]  # fmt: skip


def committed_run(store: Path) -> ActivationRun:
    local = LocalStore(store)
    (manifest,) = [key for key in local.list("runs/") if key.endswith("/manifest.json")]
    return ActivationRun(local, manifest.split("/")[1])


def assert_each_row_once_and_exact(run: ActivationRun, reference: tuple[list[str], torch.Tensor]) -> None:
    keys, expected = reference
    assert run.manifest.skipped == {}
    got = run.keys()
    assert len(got) == len(set(got)), "a row was written twice"
    assert got == keys, "the committed keys are not the inputs in order"
    activations = run.load_all()
    assert activations.dtype == torch.float16 and activations.shape == expected.shape
    torch.testing.assert_close(activations.float(), expected, atol=2e-2, rtol=1e-2)


def jobs_now(cluster: RayNodes) -> set[str]:
    return {str(job["job_id"]) for job in cluster.jobs() if job.get("job_id")}


def cpu_work_by_node(cluster: RayNodes, job_ids: set[str]) -> dict[str, set[str]]:
    """Node id -> names of the job's tasks and actors that asked for CPU (Ray Data's decode tasks and
    encoder actors; not its 0-CPU bookkeeping actors)."""
    placed: dict[str, set[str]] = {}
    for task in cluster.state("tasks", detail=True):
        cpus = task.get("required_resources", {}).get("CPU", 0)
        if task.get("job_id") in job_ids and cpus > 0 and task.get("node_id"):
            placed.setdefault(task["node_id"], set()).add(task["name"])
    for actor in cluster.state("actors", detail=True):
        cpus = actor.get("required_resources", {}).get("CPU", 0)
        if actor.get("job_id") in job_ids and cpus > 0 and actor.get("node_id"):
            placed.setdefault(actor["node_id"], set()).add(actor["class_name"])
    return placed


def assert_cpu_work_on_both_workers(cluster: RayNodes, job_ids: set[str]) -> None:
    workers = {cluster.node_id(cluster.nodes[name]) for name in WORKERS}
    head = cluster.node_id(cluster.nodes["head"])

    def both() -> dict[str, set[str]] | None:
        # Workers report task events every second: wait (bounded) until both nodes' show up.
        placed = cpu_work_by_node(cluster, job_ids)
        return placed if workers <= set(placed) else None

    placed = wait_for(both, 30, "the job's CPU tasks on both worker nodes", interval_s=0.5)
    assert head not in placed, f"CPU work ran on the head: {placed.get(head or '')}"
    assert set(placed) == workers, placed


def test_extract_with_address_runs_on_both_worker_nodes(
    cluster: RayNodes, images: Path, reference: tuple[list[str], torch.Tensor], tmp_path: Path
) -> None:
    before = jobs_now(cluster)
    result = subprocess.run(
        [CLIPLENS, *extract_args(images, tmp_path / "store"), "--address", cluster.address],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rows encoded: 256" in result.stdout
    assert_each_row_once_and_exact(committed_run(tmp_path / "store"), reference)
    assert_cpu_work_on_both_workers(cluster, jobs_now(cluster) - before)


def submit(cluster: RayNodes, submission_id: str, entrypoint: list[str]) -> dict[str, Any]:
    """``ray job submit`` (waits for the job, streaming its logs); returns the Jobs API's record."""
    command = [RAY, "job", "submit", "--address", cluster.dashboard_url, "--submission-id", submission_id]
    result = subprocess.run(
        [*command, "--", *entrypoint],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    record: dict[str, Any] = cluster.get(f"/api/jobs/{submission_id}")
    assert record["status"] == "SUCCEEDED", (record, result.stdout[-3000:], result.stderr[-3000:])
    assert result.returncode == 0
    record["logs"] = cluster.get(f"/api/jobs/{submission_id}/logs")["logs"]
    return record


@pytest.fixture(scope="module")
def submitted(cluster: RayNodes, images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``cliplens extract`` through ``ray job submit``: its Jobs API record (with the logs) and its store.
    The driver runs on the head, started by the Jobs API with RAY_ADDRESS set: no --address needed."""
    store = tmp_path_factory.mktemp("submitted") / "store"
    job = submit(cluster, "extract-submitted", [CLIPLENS, *extract_args(images, store)])
    return {**job, "store": store}


def test_extract_submitted_with_ray_job_submit(
    cluster: RayNodes, submitted: dict[str, Any], reference: tuple[list[str], torch.Tensor]
) -> None:
    assert submitted["driver_node_id"] == cluster.node_id(cluster.nodes["head"])
    assert "rows encoded: 256" in submitted["logs"]
    assert_each_row_once_and_exact(committed_run(submitted["store"]), reference)
    assert_cpu_work_on_both_workers(cluster, {submitted["job_id"]})


def test_train_sae_and_topk_submitted_on_the_run(cluster: RayNodes, submitted: dict[str, Any]) -> None:
    """train-sae and topk as jobs on the cluster (drivers on the head), on the submitted extract's run."""
    store = LocalStore(submitted["store"])
    run = committed_run(submitted["store"])
    train = [CLIPLENS, "train-sae", "--store", store.uri, "--run", run.run_id, "--sae-id", "mn-topk"]
    train += ["--arch", "topk", "--k", "4", "--expansion", "2", "--epochs", "2", "--batch-size", "64"]
    train += ["--warmup-steps", "2", "--device", "cpu"]
    assert "saved SAE 'mn-topk'" in submit(cluster, "train-sae-submitted", train)["logs"]
    assert read_sae_record(store, "mn-topk").run_id == run.run_id
    topk = [CLIPLENS, "topk", "--store", store.uri, "--sae", "mn-topk", "-k", "4"]
    topk += ["--redis-url", "redis://127.0.0.1:1/0"]  # no Redis there: the results stay in the store
    logs = submit(cluster, "topk-submitted", topk)["logs"]
    assert "stored under" in logs and "--rebuild-cache" in logs
    assert store.list(f"runs/{run.run_id}/topk/"), "topk stored nothing"


def tar_shards(parquet: Path, directory: Path, per_tar: int) -> Path:
    """The images of ``parquet`` as WebDataset tars of ``per_tar`` images (``<key>.jpg`` members), in
    order: each tar is an input of its own to read, so the job reads them one after the other."""
    import io
    import tarfile

    directory.mkdir()
    table = pq.read_table(parquet, columns=["key", "jpg"])
    keys, images = table.column("key").to_pylist(), table.column("jpg").to_pylist()
    for start in range(0, len(keys), per_tar):
        with tarfile.open(directory / f"shard-{start // per_tar:04d}.tar", "w") as tar:
            for key, data in zip(keys[start : start + per_tar], images[start : start + per_tar], strict=True):
                member = tarfile.TarInfo(f"{key}.jpg")
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    return directory


def done_markers(store: Path) -> list[Path]:
    """The commit markers of the shards written so far: ``runs/<run>/shards/shard-<i>.done.json`` (one
    per output shard), or ``runs/<run>/inputs/input-<i>.done.json`` where extract commits per input
    shard (the streaming extract: a marker per input shard, after all its parts)."""
    return sorted([*store.glob("runs/*/shards/*.done.json"), *store.glob("runs/*/inputs/*.done.json")])


def encoder_node(cluster: RayNodes) -> str | None:
    """The worker node (name) running the encoder actor: its process title is ``ray::MapWorker(...)``
    (found from the processes, at once; the State API lags behind by a second or more)."""
    for name in WORKERS:
        for pid in cluster.nodes[name].pids():
            try:
                if psutil.Process(pid).cmdline()[:1] and "MapWorker" in psutil.Process(pid).cmdline()[0]:
                    return name
            except psutil.Error:
                continue
    return None


def test_a_worker_node_killed_mid_extract_loses_and_duplicates_nothing(
    cluster: RayNodes, images: Path, reference: tuple[list[str], torch.Tensor], tmp_path: Path
) -> None:
    store, log = tmp_path / "store", tmp_path / "extract.log"
    # 32 tars of 8 images, shards of 8 rows: the demo model encodes hundreds of rows in milliseconds,
    # but the tars are read one after the other (one read task each, or one block each), so the job
    # still has most of its shards to go after the first.
    shards = 256 // 8
    tars = tar_shards(images, tmp_path / "tars", per_tar=8)
    command = [CLIPLENS, *extract_args(tars, store, rows_per_shard=8, batch_size=8)]
    command += ["--format", "webdataset", "--address", cluster.address]
    ids = {name: cluster.node_id(cluster.nodes[name]) for name in WORKERS}
    before = jobs_now(cluster)
    with open(log, "wb") as out:
        job = subprocess.Popen(
            command, env=cluster.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:

        def one_shard_committed() -> bool:
            if done_markers(store):
                return True
            if job.poll() is not None:
                raise AssertionError(f"the job ended before a shard was committed: {log.read_text()[-3000:]}")
            return False

        wait_for(one_shard_committed, JOB_TIMEOUT_S, "the job's first committed shard", interval_s=0.01)
        victim = encoder_node(cluster)
        assert victim is not None, "no encoder actor process on the worker nodes"
        cluster.nodes[victim].kill()  # every process of that raylet: its work in flight is lost
        at_kill = len(done_markers(store))
        assert job.poll() is None, f"the job ended before the node died: {log.read_text()[-3000:]}"
        assert at_kill < shards // 2, f"{at_kill} of {shards} shards were done at the kill: too late to test"
        victim_id = ids[victim]
        assert victim_id is not None
        cluster.wait_dead(victim_id)
        # A new node with the same resources joins (KubeRay recreates a dead worker pod).
        cluster.add_worker(f"{victim}-2", WORKERS[victim])
        try:
            code = job.wait(timeout=JOB_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the job hung after the node died: {log.read_text()[-3000:]}") from None
    finally:
        end_session(job.pid)
    output = log.read_text()
    if code != 0:  # the job gave up: its re-run with the same command finishes it from the committed shards
        rerun = subprocess.run(
            command, env=cluster.env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S
        )
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert "already committed, skipped" in rerun.stdout
        output = rerun.stdout
    else:  # the job carried on: Ray restarted its encoder actor on a live node
        job_ids = jobs_now(cluster) - before
        actors = [a for a in cluster.state("actors", detail=True) if a.get("job_id") in job_ids]
        encoders = [a for a in actors if a.get("required_resources", {}).get("CPU", 0) > 0]
        assert encoders and all(a["node_id"] != victim_id for a in encoders), encoders
        assert any(int(a.get("num_restarts", 0)) >= 1 for a in encoders), encoders
    print(f"node {victim} killed with {at_kill}/{shards} shards done; job exit code {code}")
    assert "extract: runs:" in output
    run = committed_run(store)
    assert len(run.manifest.shards) == shards
    assert_each_row_once_and_exact(run, reference)
    keys = pq.read_table(images, columns=["key"]).column("key").to_pylist()
    assert run.keys() == [str(k) for k in keys]
    assert json.loads((store / "runs" / run.run_id / "manifest.json").read_text())["num_rows"] == 256
