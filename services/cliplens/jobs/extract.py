"""``cliplens extract`` as a library call: inputs -> Ray Data (decode tasks, encoder actors) -> runs.

One forward pass per image feeds every requested site; each site is its own activation run
(:mod:`cliplens.store.runs`). The driver reads the input records, cuts them into the runs'
deterministic shards (shard ``i`` = inputs ``[i * rows_per_shard, (i + 1) * rows_per_shard)``) and
sends only the shards some run still lacks through the pipeline. Encoded rows stream back to the
driver, which writes each shard as soon as all of its inputs have arrived (a small thread pool
overlaps the uploads with encoding), then commits every run's manifest last. A re-run after a crash
or a kill skips the committed shards, so no row is ever lost or written twice.

The driver holds the undecoded input bytes of the dataset while the job runs (a few kB per image).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import cast

import numpy as np
import pyarrow as pa
import ray
import torch

from cliplens.core.errors import InvalidInputError
from cliplens.core.models import LoadedClip, load_clip
from cliplens.core.sites import Site, encode_images
from cliplens.jobs.extract_stages import Batch, SiteEncoder, decode_batch, site_column
from cliplens.jobs.progress import Progress
from cliplens.store.decoding import DEFAULT_MAX_PIXELS
from cliplens.store.objects import ObjectStore
from cliplens.store.readers import Record, read_class_names, read_inputs
from cliplens.store.run_writer import ActivationWriter
from cliplens.store.runs import MANIFEST_FILE, Manifest, RunSpec

MAX_WRITES_IN_FLIGHT = 8


@dataclass(frozen=True)
class ExtractConfig:
    """Everything ``cliplens extract`` is told; recorded in each run's manifest as the job config."""

    inputs: str
    model: str = "demo"
    sites: tuple[str, ...] = ("final",)
    input_format: str | None = None
    # A class-names file: index labels (parquet ``label`` column, WebDataset ``.cls``) become names.
    labels_from: str | None = None
    dataset_id: str | None = None
    rows_per_shard: int = 1024
    batch_size: int = 64
    decode_batch_size: int = 256
    decoders: int | None = None
    encoders: int = 1
    gpus_per_encoder: float | None = None
    cpus_per_encoder: float = 1.0
    torch_threads: int = 0
    dtype: str = "fp32"
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        for name in ("rows_per_shard", "batch_size", "decode_batch_size", "decoders", "encoders"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InvalidInputError(
                    f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}"
                )
        if not self.sites:
            raise InvalidInputError("give at least one site")
        canonical = tuple(str(Site.parse(site)) for site in self.sites)
        if len(set(canonical)) != len(canonical):
            raise InvalidInputError(f"sites must be distinct, got {', '.join(canonical)}")
        object.__setattr__(self, "sites", canonical)


@dataclass
class ExtractSummary:
    """What one invocation did: runs (site -> run id), rows encoded now, skipped inputs, bytes."""

    runs: dict[str, str]
    inputs: int
    shards: int
    shards_skipped: int
    rows: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    bytes_written: int = 0
    seconds: float = 0.0
    startup_seconds: float = 0.0
    steady_rows_per_s: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / max(self.seconds, 1e-9)

    def lines(self) -> list[str]:
        runs = ", ".join(f"{site} -> {run}" for site, run in self.runs.items())
        return [
            f"runs: {runs}",
            f"inputs: {self.inputs:,} in {self.shards} shards ({self.shards_skipped} already committed, skipped)",
            f"rows encoded: {self.rows:,}; inputs skipped as undecodable: {len(self.skipped):,}",
            f"written: {self.bytes_written / 1e6:,.1f} MB in {self.seconds:,.1f} s "
            f"({self.rows_per_s:,.1f} rows/s; {self.steady_rows_per_s:,.1f} rows/s after "
            f"{self.startup_seconds:,.1f} s of start-up)",
        ]


def run_extract(config: ExtractConfig, store: ObjectStore) -> ExtractSummary:
    """Extract ``config``'s sites for every input into ``store``; needs Ray to be initialised."""
    class_names = read_class_names(config.labels_from) if config.labels_from else None
    records = list(read_inputs(config.inputs, config.input_format, class_names=class_names))
    if not records:
        raise InvalidInputError(f"no inputs found at {config.inputs}")
    clip = load_clip(config.model, device="cpu", dtype=config.dtype)
    for site in config.sites:
        Site.parse(site).check(clip.model.visual)
    dataset_id = _dataset_id(config, class_names)
    writers = [
        ActivationWriter(store, _run_spec(config, clip, site, dataset_id, records)) for site in config.sites
    ]
    spec = writers[0].spec
    pending = sorted({shard for writer in writers for shard in writer.pending_shards()})
    summary = ExtractSummary(
        runs={str(w.spec.site): w.run_id for w in writers},
        inputs=len(records),
        shards=spec.num_shards,
        shards_skipped=spec.num_shards - len(pending),
    )
    progress = Progress("extract", sum(len(spec.shard_keys(s)) for s in pending))
    if pending:
        batches = _pipeline(config, clip, records, pending).iter_batches(
            batch_size=None, batch_format="numpy"
        )
        _write_shards(cast(Iterable[Batch], batches), writers, pending, summary, progress)
    for writer in writers:
        manifest = _commit(writer)
        summary.skipped.update(manifest.skipped)
    summary.seconds = progress.elapsed_s
    summary.startup_seconds, summary.steady_rows_per_s = progress.startup_s, progress.steady_rate
    return summary


def _dataset_id(config: ExtractConfig, class_names: list[str] | None) -> str:
    """The dataset part of the run id: the given id or the inputs URI, and which class names label it."""
    dataset_id = config.dataset_id or config.inputs
    if class_names is None:
        return dataset_id
    digest = hashlib.sha256("\n".join(class_names).encode()).hexdigest()[:12]
    return f"{dataset_id} (labels named by {len(class_names)} classes, {digest})"


def _run_spec(
    config: ExtractConfig, clip: LoadedClip, site: str, dataset_id: str, records: list[Record]
) -> RunSpec:
    return RunSpec(
        model_id=clip.spec.id,
        site=site,
        preprocess=f"{clip.preprocess}; encoder dtype {config.dtype}",
        dataset_id=dataset_id,
        keys=tuple(r.key for r in records),
        rows_per_shard=config.rows_per_shard,
        job=asdict(config),
    )


def _pipeline(
    config: ExtractConfig, clip: LoadedClip, records: list[Record], shards: list[int]
) -> ray.data.Dataset:
    # Blocks of one decode batch, so that decoding, encoding and the driver's writes overlap
    # (Ray Data hands a stage's output on block by block).
    tables = [
        table.slice(start, config.decode_batch_size)
        for shard in shards
        for table in [_shard_table(records, shard, config.rows_per_shard)]
        for start in range(0, table.num_rows, config.decode_batch_size)
    ]
    use_gpu_default = ray.cluster_resources().get("GPU", 0) > 0
    gpus = config.gpus_per_encoder if config.gpus_per_encoder is not None else float(use_gpu_default)
    cores = max(1, (os.cpu_count() or 1) // config.encoders)
    threads = config.torch_threads or (max(1, int(config.cpus_per_encoder)) if gpus else cores)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    return (
        ray.data.from_arrow(tables)
        .map_batches(
            cast(Callable[[Batch], Batch], decode_batch),
            fn_kwargs={
                "pixel_steps": clip.pixel_steps,
                "image_size": clip.image_size,
                "max_pixels": config.max_pixels,
            },
            # Each block is one batch: a batch size would merge the small blocks of small shards.
            batch_size=None,
            batch_format="numpy",
            num_cpus=1,
            compute=ray.data.TaskPoolStrategy(size=_decoders(config, gpus)),
        )
        .map_batches(
            SiteEncoder,
            fn_constructor_kwargs={
                "spec": clip.spec,
                "sites": list(config.sites),
                "row_shapes": _row_shapes(clip, config.sites),
                "dtype": config.dtype,
                "use_gpu": gpus > 0,
                "torch_threads": threads,
            },
            compute=ray.data.ActorPoolStrategy(size=config.encoders),
            batch_size=config.batch_size,
            batch_format="numpy",
            num_gpus=gpus,
            num_cpus=config.cpus_per_encoder,
            # Ray gives an actor OMP_NUM_THREADS = its CPUs; the encoder wants its own thread count.
            # As a side effect (remote args that differ) this keeps Ray Data from fusing the decode
            # tasks into the actors, where they would run in series with the forward pass.
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}},
        )
    )


def _decoders(config: ExtractConfig, gpus: float) -> int | None:
    """Concurrent decode tasks: as configured; else one per CPU encoder, whose forward pass already
    keeps every core busy; for GPU encoders as many as Ray Data can place, to keep the GPUs fed."""
    if config.decoders is not None:
        return config.decoders
    return None if gpus > 0 else config.encoders


def _shard_table(records: list[Record], shard: int, rows_per_shard: int) -> pa.Table:
    chunk = records[shard * rows_per_shard : (shard + 1) * rows_per_shard]
    return pa.table(
        {
            "key": pa.array([r.key for r in chunk], pa.string()),
            "data": pa.array([r.data for r in chunk], pa.binary()),
            "label": pa.array([r.label for r in chunk], pa.string()),
            "shard": pa.array([shard] * len(chunk), pa.int64()),
        }
    )


def _row_shapes(clip: LoadedClip, sites: Sequence[str]) -> list[tuple[int, ...]]:
    """Each site's activation shape per image, from one forward pass of a blank image."""
    blank = torch.zeros(1, 3, clip.image_size, clip.image_size, dtype=clip.dtype)
    with torch.no_grad():
        captured = encode_images(clip.model, blank, sites)
    return [tuple(captured[site].shape[1:]) for site in sites]


def _write_shards(
    batches: Iterable[Batch],
    writers: list[ActivationWriter],
    pending: list[int],
    summary: ExtractSummary,
    progress: Progress,
) -> None:
    """Gather streamed rows by shard and write each complete shard to every run that lacks it."""
    spec = writers[0].spec
    waiting = {shard: len(spec.shard_keys(shard)) for shard in pending}
    arrived: dict[int, dict[str, tuple[str | None, str, list[np.ndarray]]]] = {s: {} for s in pending}
    in_flight: list[Future[int]] = []
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="cliplens-write") as pool:
        for batch in batches:
            columns = [batch[site_column(i)] for i in range(len(writers))]
            for row, key in enumerate(batch["key"]):
                shard = int(batch["shard"][row])
                arrived[shard][str(key)] = (
                    batch["label"][row],
                    str(batch["reason"][row]),
                    [column[row] for column in columns],
                )
                if len(arrived[shard]) == waiting[shard]:
                    rows = arrived.pop(shard)
                    in_flight.append(pool.submit(_write_one, writers, shard, rows))
            progress.add(len(batch["key"]))
            while len(in_flight) > MAX_WRITES_IN_FLIGHT:
                summary.bytes_written += in_flight.pop(0).result()
        for future in in_flight:
            summary.bytes_written += future.result()
    summary.rows = progress.rows
    if arrived:
        raise RuntimeError(f"the pipeline lost inputs of shards {sorted(arrived)}")


def _write_one(
    writers: list[ActivationWriter], shard: int, rows: dict[str, tuple[str | None, str, list[np.ndarray]]]
) -> int:
    """Write one complete shard (rows by key) to every run; returns the bytes of tensors written."""
    order = writers[0].spec.shard_keys(shard)
    kept = [key for key in order if not rows[key][1]]
    skipped = {key: rows[key][1] for key in order if rows[key][1]}
    labels = [None if rows[key][0] is None else str(rows[key][0]) for key in kept]
    written = 0
    for site_index, writer in enumerate(writers):
        if writer.shard_info(shard) is not None:
            continue
        tensor = (
            torch.from_numpy(np.stack([rows[key][2][site_index] for key in kept]))
            if kept
            else torch.zeros((0, *rows[order[0]][2][site_index].shape), dtype=torch.float16)
        )
        writer.write_shard(shard, kept, tensor, labels, skipped)
        written += tensor.numel() * 2
    return written


def _commit(writer: ActivationWriter) -> Manifest:
    """The run's manifest: committed now, or the one already there."""
    if writer.store.exists(MANIFEST_FILE):
        return Manifest.from_json(writer.store.get_bytes(MANIFEST_FILE))
    return writer.commit()
