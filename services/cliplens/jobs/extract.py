"""``cliplens extract`` as a library call: input shards -> Ray Data (read tasks, encoder actors) -> runs.

One forward pass per image feeds every requested site; each site is its own activation run
(:mod:`cliplens.store.runs`). The driver lists the inputs as input shards
(:mod:`cliplens.store.input_shards`: metadata only, never image bytes nor a per-image list) and
sends the shards some run still lacks through the pipeline: a read task per input shard reads,
decodes and crops its images into parts of at most ``rows_per_shard`` inputs; encoder actors encode
each part and write it to the runs themselves, returning a small row per part. The driver marks an
input shard done (``inputs/input-<i>.done.json``, listing its parts) once all its parts are
written, then commits every run's manifest last. A re-run after a crash or a kill skips the
committed input shards and writes the others again, so no row is ever lost or written twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import ray
import torch

from cliplens.core.errors import CliplensError, InvalidInputError
from cliplens.core.models import LoadedClip, load_clip
from cliplens.core.sites import Site, encode_images
from cliplens.jobs.extract_stages import PartReader, PartSource, PendingShard, SiteEncoder
from cliplens.jobs.progress import Progress
from cliplens.store.decoding import DEFAULT_MAX_PIXELS
from cliplens.store.input_shards import DEFAULT_SHARD_ROWS, InputShard, list_input_shards, open_inputs
from cliplens.store.objects import ObjectStore
from cliplens.store.readers import read_class_names
from cliplens.store.run_writer import ActivationWriter
from cliplens.store.runs import MANIFEST_FILE, Manifest, RunSpec, ShardInfo


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
    # Inputs per output part (one pipeline block); an input shard of a folder or a big parquet file
    # holds about input_shard_rows inputs (a tar is one input shard, whatever its size).
    rows_per_shard: int = 1024
    input_shard_rows: int = DEFAULT_SHARD_ROWS
    batch_size: int = 64
    # Images a read task reads and decodes at a time.
    decode_batch_size: int = 256
    decoders: int | None = None
    encoders: int = 1
    gpus_per_encoder: float | None = None
    cpus_per_encoder: float = 1.0
    torch_threads: int = 0
    dtype: str = "fp32"
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        counts = (
            "rows_per_shard",
            "input_shard_rows",
            "batch_size",
            "decode_batch_size",
            "decoders",
            "encoders",
        )
        for name in counts:
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
    """What one invocation did: runs (site -> run id), inputs and input shards, rows encoded now,
    skipped inputs, bytes."""

    runs: dict[str, str]
    shards: int
    shards_skipped: int
    inputs: int = 0
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
            f"inputs: {self.inputs:,} in {self.shards} input shards "
            f"({self.shards_skipped} already committed, skipped)",
            f"rows encoded: {self.rows:,}; inputs skipped as undecodable: {len(self.skipped):,}",
            f"written: {self.bytes_written / 1e6:,.1f} MB in {self.seconds:,.1f} s "
            f"({self.rows_per_s:,.1f} rows/s; {self.steady_rows_per_s:,.1f} rows/s after "
            f"{self.startup_seconds:,.1f} s of start-up)",
        ]


def run_extract(config: ExtractConfig, store: ObjectStore) -> ExtractSummary:
    """Extract ``config``'s sites for every input into ``store``; needs Ray to be initialised."""
    class_names = read_class_names(config.labels_from) if config.labels_from else None
    source = open_inputs(config.inputs, config.input_format)
    inputs = tuple(list_input_shards(source, config.input_shard_rows))
    clip = load_clip(config.model, device="cpu", dtype=config.dtype)
    for site in config.sites:
        Site.parse(site).check(clip.model.visual)
    dataset_id = _dataset_id(config, class_names)
    writers = [
        ActivationWriter(store, _run_spec(config, clip, site, dataset_id, inputs)) for site in config.sites
    ]
    lacking = [set(writer.pending_input_shards()) for writer in writers]
    pending = [
        PendingShard(i, shard, tuple(s for s, missing in enumerate(lacking) if i in missing))
        for i, shard in enumerate(inputs)
        if any(i in missing for missing in lacking)
    ]
    summary = ExtractSummary(
        runs={str(w.spec.site): w.run_id for w in writers},
        shards=len(inputs),
        shards_skipped=len(inputs) - len(pending),
    )
    known = [p.shard.rows for p in pending]
    progress = Progress("extract", None if None in known else sum(r or 0 for r in known))
    if pending:
        reader = PartReader(
            source,
            tuple(class_names) if class_names else None,
            clip.pixel_steps,
            clip.image_size,
            config.max_pixels,
            config.rows_per_shard,
            config.decode_batch_size,
        )
        _run_pipeline(_pipeline(config, clip, reader, pending, writers), writers, pending, summary, progress)
    for writer in writers:
        manifest = _commit(writer)
        summary.skipped.update(manifest.skipped)
        summary.inputs = manifest.num_rows + manifest.num_skipped
    summary.rows = progress.rows
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
    config: ExtractConfig, clip: LoadedClip, site: str, dataset_id: str, inputs: tuple[InputShard, ...]
) -> RunSpec:
    return RunSpec(
        model_id=clip.spec.id,
        site=site,
        preprocess=f"{clip.preprocess}; encoder dtype {config.dtype}",
        dataset_id=dataset_id,
        inputs=inputs,
        rows_per_shard=config.rows_per_shard,
        job=asdict(config),
    )


def _pipeline(
    config: ExtractConfig,
    clip: LoadedClip,
    reader: PartReader,
    pending: list[PendingShard],
    writers: list[ActivationWriter],
) -> ray.data.Dataset:
    use_gpu_default = ray.cluster_resources().get("GPU", 0) > 0
    gpus = config.gpus_per_encoder if config.gpus_per_encoder is not None else float(use_gpu_default)
    cores = max(1, (os.cpu_count() or 1) // config.encoders)
    threads = config.torch_threads or (max(1, int(config.cpus_per_encoder)) if gpus else cores)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    return ray.data.read_datasource(
        PartSource(reader, pending),
        concurrency=_decoders(config, gpus),
        num_cpus=1,
        override_num_blocks=len(pending),
    ).map_batches(
        SiteEncoder,
        fn_constructor_kwargs={
            "spec": clip.spec,
            "sites": list(config.sites),
            "row_shapes": _row_shapes(clip, config.sites),
            "dtype": config.dtype,
            "use_gpu": gpus > 0,
            "torch_threads": threads,
            "batch_size": config.batch_size,
            "writers": writers,
        },
        compute=ray.data.ActorPoolStrategy(size=config.encoders),
        # One part (a row) at a time: the actor encodes it in batch_size chunks and writes it whole.
        batch_size=1,
        batch_format="numpy",
        num_gpus=gpus,
        num_cpus=config.cpus_per_encoder,
        # Ray gives an actor OMP_NUM_THREADS = its CPUs; the encoder wants its own thread count.
        # As a side effect (remote args that differ) this keeps Ray Data from fusing the read tasks
        # into the actors, where they would run in series with the forward pass.
        runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}},
    )


def _decoders(config: ExtractConfig, gpus: float) -> int | None:
    """Concurrent read + decode tasks: as configured; else one per CPU encoder, whose forward pass
    already keeps every core busy; for GPU encoders as many as Ray Data can place, to keep the GPUs fed."""
    if config.decoders is not None:
        return config.decoders
    return None if gpus > 0 else config.encoders


def _row_shapes(clip: LoadedClip, sites: Sequence[str]) -> list[tuple[int, ...]]:
    """Each site's activation shape per image, from one forward pass of a blank image."""
    blank = torch.zeros(1, 3, clip.image_size, clip.image_size, dtype=clip.dtype)
    with torch.no_grad():
        captured = encode_images(clip.model, blank, sites)
    return [tuple(captured[site].shape[1:]) for site in sites]


def _run_pipeline(
    dataset: ray.data.Dataset,
    writers: list[ActivationWriter],
    pending: list[PendingShard],
    summary: ExtractSummary,
    progress: Progress,
) -> None:
    """Iterate the encoders' small rows; mark each input shard done once all of its parts are written."""
    sites = {p.index: p.sites for p in pending}
    parts: dict[int, dict[int, list[dict[str, object] | None]]] = {}
    expected: dict[int, int] = {}
    for row in _rows(dataset):
        index = int(row["input_shard"])
        if int(row["parts"]) >= 0:
            expected[index] = int(row["parts"])
        else:
            parts.setdefault(index, {})[int(row["part"])] = json.loads(row["infos"])
            summary.bytes_written += int(row["bytes"])
            progress.add(int(row["inputs"]))
        if index in expected and len(parts.get(index, {})) == expected[index]:
            written = parts.pop(index, {})
            for site in sites.pop(index):
                infos = [written[part][site] for part in range(expected[index])]
                writers[site].finish_input_shard(index, [ShardInfo.from_dict(_written(i)) for i in infos])
            del expected[index]
    if sites:
        lost = ", ".join(str(index) for index in sorted(sites)[:10])
        raise RuntimeError(f"the pipeline lost input shards {lost} (of {len(pending)} sent)")


def _rows(dataset: ray.data.Dataset) -> Iterator[dict[str, Any]]:
    """The dataset's rows; a cliplens error of a worker (a bad input shard, an unreachable store)
    is raised again as itself, its message without the worker's traceback."""
    try:
        yield from dataset.iter_rows()
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, CliplensError):
            raise type(exc.cause)(str(exc.cause)) from None
        raise


def _written(info: dict[str, object] | None) -> dict[str, object]:
    if info is None:
        raise RuntimeError("an encoder skipped a part of an input shard that a run lacks")
    return info


def _commit(writer: ActivationWriter) -> Manifest:
    """The run's manifest: committed now, or the one already there."""
    if writer.store.exists(MANIFEST_FILE):
        return Manifest.from_json(writer.store.get_bytes(MANIFEST_FILE))
    return writer.commit()
