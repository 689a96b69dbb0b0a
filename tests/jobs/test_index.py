"""``cliplens index`` in process (the session's Ray): class-name labels from a parquet label column,
the cache fill, and an SAE id that exists with other settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from job_helpers import cifar_subset

from cliplens.cli import main
from cliplens.core.prompts import CIFAR10_CLASSES, CIFAR10_CLASSES_FILE
from cliplens.store import (
    LocalStore,
    TopKCache,
    load_sae_from_store,
    read_latent_stats,
    read_sae_record,
    read_topk_results,
)
from cliplens.store.local_stack import RedisServer

ROWS = 96


def test_index_names_parquet_labels_fills_the_cache_and_guards_the_sae_id(
    ray_session: None,
    cifar_sample: Path,
    redis_server: RedisServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    parquet = cifar_subset(cifar_sample, tmp_path, ROWS)
    store = LocalStore(tmp_path / "store")
    args = ["index", str(parquet), "--model", "demo", "--sae-id", "named", "--store", store.uri]
    args += ["--labels-from", str(CIFAR10_CLASSES_FILE), "--redis", redis_server.url]
    args += ["--d-sae", "64", "--k", "4"]
    args += ["--epochs", "2", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        f"{ROWS} inputs, {ROWS} encoded, 0 skipped" in out and f"loaded named into {redis_server.url}" in out
    )
    run_id = read_sae_record(store, "named").run_id
    rows = read_topk_results(store, run_id, "named")
    assert rows and {row.label for row in rows} <= set(CIFAR10_CLASSES)
    stats = read_latent_stats(store, run_id, "named")
    assert sum(s.fires for s in stats) == 4 * ROWS  # TopK: every row fires exactly k latents
    assert set().union(*(s.label_counts for s in stats)) <= set(CIFAR10_CLASSES)
    assert TopKCache(redis_server.url).is_ready("named")

    first = load_sae_from_store(store, "named").sae.state_dict()

    assert main([*args[:-4], "--epochs", "3", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "SAE 'named' is already in the catalog, trained with other settings" in err and "--force" in err
    assert main([*args, "--force"]) == 0  # trains again: the default seed gives the same SAE
    assert "(already trained, skipped)" not in capsys.readouterr().out
    again = load_sae_from_store(store, "named").sae.state_dict()
    assert all(torch.equal(first[name], again[name]) for name in first)
