"""``cliplens index`` as a library call: extract, then train-sae, then topk, then the cache fill.

Each stage is resumable: extract skips committed shards; training and topk are skipped when the
catalog already holds this SAE trained the same way on the same run (recorded in
``saes/<sae_id>/index.json``) with its feature index in the store. An SAE id that exists with other
settings is refused unless ``force`` is given.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from cliplens.core.errors import InvalidInputError
from cliplens.core.sae.train import TrainConfig
from cliplens.jobs.extract import ExtractConfig, ExtractSummary, run_extract
from cliplens.jobs.sae_training import SaeJob, train_sae_on_run
from cliplens.jobs.topk import compute_topk
from cliplens.store.errors import StoreUnavailableError
from cliplens.store.feature_index import TopKResult, fill_cache, has_results, load_results, save_results
from cliplens.store.objects import ObjectStore
from cliplens.store.run_reader import ActivationRun
from cliplens.store.saes import SaeRecord, check_sae_id, load_sae_from_store, read_sae_record, sae_key

INDEX_FILE = "index.json"
T = TypeVar("T")


@dataclass(frozen=True)
class IndexJob:
    """One SAE indexed on one site of a data set.

    ``d_sae`` defaults to ``expansion`` x the site's width; ``fields`` are the architecture's own
    config fields (e.g. ``{"k": 16}``); ``top_k`` inputs are kept per latent; ``redis_url`` is the
    cache to fill (``None``: no cache fill; ``cliplens serve`` fills its cache from the store).
    """

    extract: ExtractConfig
    sae_id: str
    arch: str = "topk"
    d_sae: int | None = None
    expansion: int = 8
    fields: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    batch_size: int = 1024
    buffer_rows: int = 65536
    top_k: int = 16
    redis_url: str | None = None
    force: bool = False

    def __post_init__(self) -> None:
        check_sae_id(self.sae_id)
        if len(self.extract.sites) != 1:
            raise InvalidInputError(f"index trains one SAE on one site, got sites {list(self.extract.sites)}")
        if self.top_k < 1:
            raise InvalidInputError(f"top-k must be at least 1, got {self.top_k}")


@dataclass
class IndexSummary:
    """What each stage did, for the closing summary."""

    extract: ExtractSummary | None = None
    record: SaeRecord | None = None
    trained: bool = False
    results: list[TopKResult] = field(default_factory=list)
    ranked: bool = False
    cache: str = ""
    top_k: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        assert self.extract is not None and self.record is not None
        run_id = next(iter(self.extract.runs.values()))
        skipped = self.extract.skipped
        reasons = "; ".join(f"{key}: {why}" for key, why in list(skipped.items())[:3])
        cfg, metrics = self.record.cfg, self.record.metrics
        main = self.results[0] if self.results else None
        firing = sum(1 for s in main.stats if s.fires) if main else 0
        lines = [
            f"extract: run {run_id}: {self.extract.inputs:,} inputs, "
            f"{self.extract.inputs - len(skipped):,} encoded, {len(skipped):,} skipped as undecodable"
            + (f" ({reasons}{'; ...' if len(skipped) > 3 else ''})" if skipped else ""),
            f"train-sae: {self.record.sae_id}: {cfg.arch}, d_in {cfg.d_in}, d_sae {cfg.d_sae}; "
            + ", ".join(
                f"{name} {metrics[name]:.4g}" for name in ("l0", "r2", "dead_fraction") if name in metrics
            )
            + ("" if self.trained else " (already trained, skipped)"),
            f"topk: {firing:,}/{cfg.d_sae:,} latents fire; up to {self.top_k} top inputs each"
            + ("" if self.ranked else " (already in the store, skipped)"),
            f"cache: {self.cache}",
        ]
        times = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in self.seconds.items())
        return [*lines, f"time: {times}"]


def run_index(job: IndexJob, store: ObjectStore) -> IndexSummary:
    """All four stages for ``job`` into ``store``; extract and topk need Ray to be initialised."""
    summary = IndexSummary(top_k=job.top_k)
    summary.extract = _timed(summary, "extract", lambda: run_extract(job.extract, store))
    run = ActivationRun(store, next(iter(summary.extract.runs.values())))
    if run.num_rows == 0:
        raise InvalidInputError(f"no input of {job.extract.inputs} could be decoded; nothing to index")
    patches = len(run.row_shape) == 2
    d_sae = job.d_sae or job.expansion * run.row_shape[-1]
    training = _training_identity(job, run.run_id, d_sae)
    done = _read_index_file(store, job.sae_id)
    if done is not None and done.get("training") == training and not job.force:
        summary.record = read_sae_record(store, job.sae_id)
    else:
        if store.exists(sae_key(job.sae_id, "cfg.json")) and not job.force:
            raise InvalidInputError(
                f"SAE '{job.sae_id}' is already in the catalog, trained with other settings or data; "
                "choose another --sae-id, or pass --force to replace it"
            )
        sae_job = SaeJob(
            run.run_id, job.sae_id, job.arch, d_sae, job.fields, job.train, job.batch_size, job.buffer_rows
        )
        summary.record = _timed(summary, "train-sae", lambda: train_sae_on_run(store, sae_job)[1])
        summary.trained = True
        done = {"training": training}
        _write_index_file(store, job.sae_id, done)
    if (
        summary.trained
        or done.get("top_k") != job.top_k
        or not has_results(store, run.run_id, job.sae_id, patches)
    ):
        sae = load_sae_from_store(store, job.sae_id).sae
        summary.results = _timed(
            summary, "topk", lambda: compute_topk(run, sae, job.sae_id, job.top_k, on_ray=True)
        )
        save_results(store, run.run_id, summary.results)
        summary.ranked = True
        _write_index_file(store, job.sae_id, {**done, "top_k": job.top_k})
    else:
        summary.results = load_results(store, run.run_id, job.sae_id, patches)
    summary.cache = _timed(summary, "cache", lambda: _fill(job.redis_url, summary.results))
    return summary


def _fill(redis_url: str | None, results: list[TopKResult]) -> str:
    if redis_url is None:
        return (
            "no Redis given (--redis or $CLIPLENS_REDIS_URL); `cliplens serve` loads the index into its cache"
        )
    try:
        fill_cache(redis_url, results)
    except StoreUnavailableError as exc:
        return f"warning: Redis unavailable, not filled ({exc}); the index is in the store"
    return f"loaded {', '.join(r.result_id for r in results)} into {redis_url}"


def _training_identity(job: IndexJob, run_id: str, d_sae: int) -> dict[str, Any]:
    """What determines the trained SAE: JSON-comparable, recorded in the index file."""
    train = {name: value for name, value in asdict(job.train).items() if name not in ("device", "progress")}
    fields = {name: list(value) if isinstance(value, tuple) else value for name, value in job.fields.items()}
    return {
        "run_id": run_id,
        "arch": job.arch,
        "d_sae": d_sae,
        "fields": fields,
        "train": train,
        "batch_size": job.batch_size,
        "buffer_rows": job.buffer_rows,
    }


def _read_index_file(store: ObjectStore, sae_id: str) -> dict[str, Any] | None:
    key = sae_key(sae_id, INDEX_FILE)
    return json.loads(store.get_bytes(key)) if store.exists(key) else None


def _write_index_file(store: ObjectStore, sae_id: str, document: dict[str, Any]) -> None:
    store.put_bytes(sae_key(sae_id, INDEX_FILE), json.dumps(document, indent=1, sort_keys=True).encode())


def _timed(summary: IndexSummary, stage: str, work: Callable[[], T]) -> T:
    start = time.monotonic()
    print(f"index: {stage} ...", flush=True)
    result = work()
    summary.seconds[stage] = time.monotonic() - start
    return result
