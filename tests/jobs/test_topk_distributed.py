"""``cliplens topk`` on Ray (a task per shard, tree merges) gives exactly the one-process results:
real runs in S3 at a final and a patch site, several shards and labels, ties; the command's store
and Redis results."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from job_helpers import cifar_subset

from cliplens.cli import main
from cliplens.core.sae import ReluConfig, Sae, TopKConfig, build_sae
from cliplens.jobs.extract import ExtractConfig, run_extract
from cliplens.jobs.topk import compute_topk
from cliplens.store import (
    ActivationRun,
    ObjectStore,
    S3Config,
    TopKCache,
    TopKEntry,
    TopKRow,
    load_results,
    save_sae_to_store,
)
from cliplens.store.local_stack import RedisServer
from fixtures_servers import s3_store

IMAGES, ROWS_PER_SHARD, K = 120, 20, 6
SITES = ("final", "resid:3:patches")
CONSTANT, NEVER, COORDINATES = 3, 1, 12  # the tying SAE's latents, in this order


@pytest.fixture(scope="module")
def runs(
    ray_session: None, cifar_sample: Path, s3_config: S3Config, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ObjectStore, dict[str, ActivationRun]]:
    """Both sites of 120 CIFAR-10 images (labels: their classes), 6 shards each, in an S3 store."""
    store = s3_store(s3_config)
    parquet = cifar_subset(cifar_sample, tmp_path_factory.mktemp("topk"), IMAGES)
    config = ExtractConfig(inputs=str(parquet), sites=SITES, rows_per_shard=ROWS_PER_SHARD, batch_size=64)
    summary = run_extract(config, store)
    return store, {site: ActivationRun(store, run_id) for site, run_id in summary.runs.items()}


def random_sae(d_in: int, **fields: str) -> Sae:
    torch.manual_seed(0)
    return build_sae(TopKConfig(d_in=d_in, d_sae=48, k=6, **fields))


def tying_sae(d_in: int) -> Sae:
    """ReLU latents that tie: constants (every row at 0.5), one that never fires, then latents that
    read one input coordinate each (+x or -x: fp16 rows share values)."""
    sae = build_sae(ReluConfig(d_in=d_in, d_sae=CONSTANT + NEVER + COORDINATES))
    with torch.no_grad():
        for tensor in (sae.W_enc, sae.b_enc, sae.b_pre):
            tensor.zero_()
        sae.b_enc[:CONSTANT], sae.b_enc[CONSTANT] = 0.5, -1.0
        for i in range(COORDINATES):
            sae.W_enc[i, CONSTANT + NEVER + i] = (-1.0) ** i
    return sae


@pytest.mark.parametrize("make_sae", [random_sae, tying_sae])
@pytest.mark.parametrize("site", SITES)
def test_ray_gives_exactly_the_one_process_results(
    runs: tuple[ObjectStore, dict[str, ActivationRun]], site: str, make_sae: Callable[[int], Sae]
) -> None:
    run = runs[1][site]
    sae = make_sae(run.row_shape[-1])
    local = compute_topk(run, sae, "s", K)
    assert compute_topk(run, sae, "s", K, on_ray=True) == local
    assert len(run.manifest.shards) >= IMAGES // ROWS_PER_SHARD
    assert [r.result_id for r in local] == (["s"] if site == "final" else ["s", "s.patch-mean"])
    assert max(len(stats.label_counts) for stats in local[0].stats) > 1


def test_ties_go_to_the_earlier_row(runs: tuple[ObjectStore, dict[str, ActivationRun]]) -> None:
    run = runs[1]["final"]
    (result,) = compute_topk(run, tying_sae(run.row_shape[-1]), "ties", K, on_ray=True)
    x = run.load_all().float()[:, :COORDINATES] * torch.tensor([(-1.0) ** i for i in range(COORDINATES)])
    z = torch.cat([torch.full((IMAGES, CONSTANT), 0.5), torch.zeros(IMAGES, NEVER), x.relu()], 1)
    keys, labels = run.keys(), run.labels()
    expected = []
    for latent, values in enumerate(z.T.tolist()):
        best = sorted((row for row in range(IMAGES) if values[row] > 0), key=lambda r: (-values[r], r))[:K]
        expected += [TopKRow(latent, rank, keys[r], values[r], labels[r]) for rank, r in enumerate(best)]
    assert result.rows == expected
    assert [row.key for row in result.rows[:K]] == keys[:K]  # a constant: every row ties
    tied = [(a, b) for a, b in pairwise(result.rows) if a.latent == b.latent]
    assert sum(a.activation == b.activation for a, b in tied[CONSTANT * (K - 1) :]) > 0  # fp16 ties
    constant = result.stats[0]
    assert constant.fires == IMAGES and constant.histogram_counts[-1] == IMAGES
    assert constant.label_counts == Counter(labels) and result.stats[CONSTANT].fires == 0


def test_the_command_stores_and_caches_the_one_process_results(
    runs: tuple[ObjectStore, dict[str, ActivationRun]],
    s3_config: S3Config,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, run = runs[0], runs[1]["resid:3:patches"]
    monkeypatch.setenv("CLIPLENS_S3_ENDPOINT", f"http://{s3_config.endpoint}")
    monkeypatch.setenv("CLIPLENS_S3_ACCESS_KEY", s3_config.access_key or "")
    monkeypatch.setenv("CLIPLENS_S3_SECRET_KEY", s3_config.secret_key or "")
    sae = random_sae(run.row_shape[-1], dataset_id=run.run_id, site="resid:3:patches")
    save_sae_to_store(store, "cli-sae", sae)
    args = ["topk", "--store", store.uri, "--sae", "cli-sae", "-k", str(K), "--redis-url", redis_server.url]
    assert main(args) == 0
    assert "topk: loaded cli-sae, cli-sae.patch-mean into Redis" in capsys.readouterr().out
    expected = compute_topk(run, sae, "cli-sae", K)
    assert load_results(store, run.run_id, "cli-sae", patches=True) == expected
    cache = TopKCache(redis_server.url, k=K)
    for result in expected:
        for latent, stats in enumerate(result.stats):
            rows = [row for row in result.rows if row.latent == latent]
            top = [TopKEntry(row.key, row.activation, row.label) for row in rows]
            assert cache.top(result.result_id, latent) == top
            assert cache.stats(result.result_id, latent) == stats
