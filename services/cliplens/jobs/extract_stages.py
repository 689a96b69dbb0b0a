"""The Ray Data stages of ``cliplens extract``: read + decode (tasks), encode + write (actors).

One row is one output part: at most ``rows_per_shard`` consecutive inputs of one input shard, with
columns ``input_shard``, ``part``, ``parts`` (-1; on the input shard's closing row, which holds
no inputs, its number of parts), ``sites`` (the runs that still lack the input shard), ``key``,
``label``, ``reason`` (lists; a reason is empty when the image decoded) and ``pixels`` (the part's
uint8 pixels, ``(inputs, 3, size, size)``, as bytes). A part is never split across blocks, so the
encoder writes whole parts; it returns one small row per part: ``input_shard``, ``part``,
``parts``, ``inputs``, ``bytes`` (tensor bytes written) and ``infos`` (JSON: each run's part
record, or null for a run that already had the input shard).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from itertools import islice

import numpy as np
import pyarrow as pa
import torch
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from cliplens.core.models import ModelSpec, PixelSteps, load_clip
from cliplens.core.sites import encode_images
from cliplens.store.decoding import Skipped, decode_image
from cliplens.store.input_shards import InputShard, InputSource
from cliplens.store.readers import Record, read_input_shard
from cliplens.store.run_writer import ActivationWriter

Batch = dict[str, np.ndarray]
PART_SCHEMA = pa.schema(
    [
        ("input_shard", pa.int64()),
        ("part", pa.int64()),
        ("parts", pa.int64()),
        ("sites", pa.list_(pa.int64())),
        ("key", pa.list_(pa.string())),
        ("label", pa.list_(pa.string())),
        ("reason", pa.list_(pa.string())),
        ("pixels", pa.large_binary()),
    ]
)


@dataclass(frozen=True)
class PartReader:
    """How a read task turns its input shard into part rows: the inputs, labels, decoding and sizes
    (``rows_per_shard`` inputs a part; ``decode_batch_size`` images read and decoded at a time,
    which bounds the undecoded bytes a task holds)."""

    source: InputSource
    class_names: tuple[str, ...] | None
    pixel_steps: PixelSteps
    image_size: int
    max_pixels: int
    rows_per_shard: int
    decode_batch_size: int

    def parts(self, index: int, shard: InputShard, sites: Sequence[int]) -> Iterator[pa.Table]:
        """Input shard ``index``'s parts, decoded, then its closing row."""
        records = read_input_shard(self.source, shard, self.class_names)
        count = 0
        while row := self._part(records, index, count, sites):
            yield row
            count += 1
        yield self._row(index, count, count, sites, [], [], [], np.zeros(0, np.uint8))

    def decode(self, records: Sequence[Record]) -> tuple[np.ndarray, list[str]]:
        """Decode, resize and crop every image into uint8 pixels (normalised later, by the encoder,
        a batch at once); undecodable ones get zero pixels and their skip reason."""
        pixels = np.zeros((len(records), 3, self.image_size, self.image_size), np.uint8)
        reasons = []
        for row, record in enumerate(records):
            image = decode_image(record.data, self.max_pixels)
            if isinstance(image, Skipped):
                reasons.append(image.reason)
                continue
            reasons.append("")
            pixels[row] = self.pixel_steps.pixels(image).numpy()
        return pixels, reasons

    def _part(
        self, records: Iterator[Record], index: int, part: int, sites: Sequence[int]
    ) -> pa.Table | None:
        """The next part's row, or ``None`` when the input shard has no more inputs."""
        keys: list[str] = []
        labels: list[str | None] = []
        reasons: list[str] = []
        pixels: list[np.ndarray] = []
        while len(keys) < self.rows_per_shard:
            chunk = list(islice(records, min(self.decode_batch_size, self.rows_per_shard - len(keys))))
            if not chunk:
                break
            decoded, why = self.decode(chunk)
            keys += [r.key for r in chunk]
            labels += [r.label for r in chunk]
            reasons += why
            pixels.append(decoded)
        if not keys:
            return None
        return self._row(index, part, -1, sites, keys, labels, reasons, np.concatenate(pixels))

    @staticmethod
    def _row(
        index: int,
        part: int,
        parts: int,
        sites: Sequence[int],
        keys: list[str],
        labels: list[str | None],
        reasons: list[str],
        pixels: np.ndarray,
    ) -> pa.Table:
        columns = {
            "input_shard": [index],
            "part": [part],
            "parts": [parts],
            "sites": [list(sites)],
            "key": [keys],
            "label": [labels],
            "reason": [reasons],
            "pixels": [pixels.tobytes()],
        }
        return pa.table(columns, schema=PART_SCHEMA)


@dataclass(frozen=True)
class PendingShard:
    """An input shard some run still lacks: its position in the listing and those runs (site indices)."""

    index: int
    shard: InputShard
    sites: tuple[int, ...]


class PartSource(Datasource):
    """The read stage: one Ray Data read task per pending input shard, yielding its part rows."""

    def __init__(self, reader: PartReader, pending: Sequence[PendingShard]) -> None:
        self.reader, self.pending = reader, list(pending)

    def estimate_inmemory_data_size(self) -> int:
        return sum(p.shard.size for p in self.pending)

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: object = None
    ) -> list[ReadTask]:
        """One task per input shard, whatever ``parallelism`` asks: a task is the unit of resumption."""
        return [
            ReadTask(
                partial(self.reader.parts, p.index, p.shard, p.sites),
                BlockMetadata(
                    num_rows=None, size_bytes=p.shard.size, exec_stats=None, input_files=(p.shard.name,)
                ),
                schema=PART_SCHEMA,
            )
            for p in self.pending
        ]


class SiteEncoder:
    """An actor holding the model: encodes each part once (``batch_size`` images at a time), writes
    every site's activations (fp16) to the runs that lack its input shard, returns a small row."""

    def __init__(
        self,
        spec: ModelSpec,
        sites: Sequence[str],
        row_shapes: Sequence[tuple[int, ...]],
        dtype: str,
        use_gpu: bool,
        torch_threads: int,
        batch_size: int,
        writers: Sequence[ActivationWriter],
    ) -> None:
        torch.set_num_threads(torch_threads)
        self.clip = load_clip(spec, device="cuda" if use_gpu else "cpu", dtype=dtype)
        self.sites, self.row_shapes = list(sites), [tuple(s) for s in row_shapes]
        self.batch_size, self.writers = batch_size, list(writers)

    def __call__(self, batch: Batch) -> Batch:
        rows = [self._part(batch, i) for i in range(len(batch["part"]))]
        return {name: np.array([row[name] for row in rows]) for name in rows[0]}

    def _part(self, batch: Batch, i: int) -> dict[str, int | str]:
        index, part, parts = int(batch["input_shard"][i]), int(batch["part"][i]), int(batch["parts"][i])
        keys, labels = [str(k) for k in batch["key"][i]], list(batch["label"][i])
        reasons = [str(r) for r in batch["reason"][i]]
        infos: list[dict[str, object] | None] = [None] * len(self.writers)
        written = 0
        if keys:
            size = self.clip.image_size
            pixels = np.frombuffer(batch["pixels"][i], np.uint8).reshape(len(keys), 3, size, size)
            good = np.array([not reason for reason in reasons], dtype=bool)
            activations = self._encode(pixels[good])
            kept = [k for k, ok in zip(keys, good, strict=True) if ok]
            kept_labels = [
                None if label is None else str(label) for label, ok in zip(labels, good, strict=True) if ok
            ]
            skipped = {k: r for k, r in zip(keys, reasons, strict=True) if r}
            for site in batch["sites"][i]:
                tensor = activations[int(site)]
                info = self.writers[int(site)].write_part(index, part, kept, tensor, kept_labels, skipped)
                infos[int(site)] = asdict(info)
                written += tensor.numel() * 2
        return {
            "input_shard": index,
            "part": part,
            "parts": parts,
            "inputs": len(keys),
            "bytes": written,
            "infos": json.dumps(infos),
        }

    def _encode(self, pixels: np.ndarray) -> list[torch.Tensor]:
        """Each site's fp16 activations of ``pixels`` (a part's decoded images), on the CPU."""
        outputs: list[list[torch.Tensor]] = [
            [torch.zeros((0, *shape), dtype=torch.float16)] for shape in self.row_shapes
        ]
        for start in range(0, len(pixels), self.batch_size):
            chunk = self.clip.normalise_pixels(torch.from_numpy(pixels[start : start + self.batch_size]))
            with torch.no_grad():
                captured = encode_images(self.clip.model, chunk, self.sites)
            for output, site in zip(outputs, self.sites, strict=True):
                output.append(captured[site].to("cpu", torch.float16))
        return [torch.cat(output) for output in outputs]
