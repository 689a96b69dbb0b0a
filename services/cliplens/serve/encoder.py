"""Encoder deployment: image and text embeddings with dynamic batching across requests.

Decoding, resizing and cropping run in a thread pool on the request path and yield uint8 pixels; the
batched call stacks them, normalises the whole batch on the model's device and runs the model, so the
accelerator never waits for JPEG decoding and per-image Python work stays small (it shares the GIL
with the model's own Python). Batch sizes count
rows (images or texts), not requests: a request larger than one batch is split into several.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from ray import serve
from torch import Tensor

from cliplens.core.models import LoadedClip
from cliplens.core.sites import Site, encode_images
from cliplens.serve.actor_types import Floats, ModelFacts, RequestImage
from cliplens.serve.backends import takes_deadline
from cliplens.serve.batching import (
    QueueDepth,
    configure_batching,
    group_indices,
    in_time,
    raise_if_failed,
    record_batch,
)
from cliplens.serve.loading import load_models
from cliplens.serve.request_checks import decode_rgb
from cliplens.serve.rpc_frame import current_deadline
from cliplens.serve.settings import AppSettings

Encode = Callable[[LoadedClip, Tensor], Tensor]


@dataclass(frozen=True)
class BatchRows:
    """One request's rows (pixels or tokens) queued for a model batch, with its caller's deadline."""

    model_id: str
    rows: Tensor
    deadline: float | None


BatchedCall = Callable[[BatchRows], Awaitable[Floats | Exception]]


def batch_rows(items: list[BatchRows]) -> int:
    """A model batch's size in rows (images or texts), whatever the number of requests."""
    return sum(int(item.rows.shape[0]) for item in items)


def model_facts(clip: LoadedClip) -> ModelFacts:
    visual = clip.model.visual
    grid = getattr(visual, "grid_size", (0, 0))
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", [])
    return ModelFacts(
        clip.spec.id,
        clip.spec.arch,
        clip.spec.description,
        clip.embed_dim,
        clip.image_size,
        len(blocks),
        int(grid[0]),
    )


def image_pixels(clip: LoadedClip, images: list[RequestImage], max_pixels: int) -> Tensor:
    """Decoded images after the model's resize and crop: one uint8 CPU tensor ``(n, 3, size, size)``.

    Normalisation waits for the model's batch, where it runs once over all rows on the model's device.
    """
    steps = clip.pixel_steps
    return torch.stack([steps.pixels(decode_rgb(image.field, image.data, max_pixels)) for image in images])


@serve.deployment(name="Encoder")
class Encoder:
    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.models = load_models(settings)
        self.pool = ThreadPoolExecutor(settings.preprocess_threads, thread_name_prefix="preprocess")
        configure_batching(self._image_batch, settings.encoder_batch)
        configure_batching(self._text_batch, settings.encoder_batch)
        self.image_queue, self.text_queue = QueueDepth("embed_images"), QueueDepth("embed_texts")

    @takes_deadline
    async def facts(self) -> list[ModelFacts]:
        return [model_facts(clip) for clip in self.models.values()]

    @takes_deadline
    async def embed_images(self, model_id: str, images: list[RequestImage]) -> Floats:
        """Floats ``(n, d_embed)`` of encoded images, not normalised."""
        pixels = await self._image_pixels(model_id, images)
        with self.image_queue.waiting_for_batch():
            return await self._in_batches(self._image_batch, model_id, pixels)

    @takes_deadline
    async def embed_texts(self, model_id: str, texts: list[str]) -> Floats:
        """Floats ``(n, d_embed)`` of texts, not normalised (tokenised on the request path)."""
        tokens = self.models[model_id].tokenizer(texts)
        with self.text_queue.waiting_for_batch():
            return await self._in_batches(self._text_batch, model_id, tokens)

    async def _in_batches(self, batched: BatchedCall, model_id: str, rows: Tensor) -> Floats:
        """Queue ``rows`` in parts of at most one model batch; the parts join other requests' rows."""
        parts = torch.split(rows, self.settings.encoder_batch.max_batch_size)
        deadline = current_deadline()
        results = await asyncio.gather(*(batched(BatchRows(model_id, part, deadline)) for part in parts))
        return np.concatenate([raise_if_failed(result) for result in results])

    @takes_deadline
    async def site_activations(self, model_id: str, site: str, images: list[RequestImage]) -> Floats:
        """Activations of the images at ``site``: ``(n, width)`` or ``(n, patches, width)``."""
        pixels = await self._image_pixels(model_id, images)
        return await asyncio.to_thread(self._capture, self.models[model_id], Site.parse(site), pixels)

    async def _image_pixels(self, model_id: str, images: list[RequestImage]) -> Tensor:
        """:func:`image_pixels` in the preprocessing pool, off the event loop."""
        loop = asyncio.get_running_loop()
        max_pixels = self.settings.limits.max_image_pixels
        return await loop.run_in_executor(self.pool, image_pixels, self.models[model_id], images, max_pixels)

    @serve.batch(batch_size_fn=batch_rows)
    async def _image_batch(self, items: list[BatchRows]) -> list[Floats | Exception]:
        return await self._run_batch("embed_images", items, self._encode_images)

    @serve.batch(batch_size_fn=batch_rows)
    async def _text_batch(self, items: list[BatchRows]) -> list[Floats | Exception]:
        return await self._run_batch("embed_texts", items, self._encode_texts)

    async def _run_batch(
        self, operation: str, items: list[BatchRows], encode: Encode
    ) -> list[Floats | Exception]:
        """Run each model once over its in-time requests' rows and split the result back per request;
        requests whose deadline passed while queued get the error instead."""
        out, live = in_time(operation, items, lambda item: item.deadline)
        record_batch(operation, len(live), sum(int(items[i].rows.shape[0]) for i in live))
        computed = await asyncio.to_thread(self._encode_groups, [items[i] for i in live], encode)
        for i, rows in zip(live, computed, strict=True):
            out[i] = rows
        return out

    def _encode_groups(self, items: list[BatchRows], encode: Encode) -> list[Floats]:
        out: list[Floats] = [np.empty(0, np.float32)] * len(items)
        for model_id, indices in group_indices(items, lambda item: item.model_id).items():
            parts = [items[i].rows for i in indices]
            embeddings = encode(self.models[model_id], torch.cat(parts)).float().cpu().numpy()
            splits = np.split(embeddings, np.cumsum([part.shape[0] for part in parts])[:-1])
            for i, rows in zip(indices, splits, strict=True):
                out[i] = rows
        return out

    @staticmethod
    @torch.no_grad()
    def _encode_images(clip: LoadedClip, pixels: Tensor) -> Tensor:
        return clip.model.encode_image(clip.normalise_pixels(pixels))

    @staticmethod
    @torch.no_grad()
    def _encode_texts(clip: LoadedClip, tokens: Tensor) -> Tensor:
        return clip.model.encode_text(tokens.to(clip.device))

    @staticmethod
    @torch.no_grad()
    def _capture(clip: LoadedClip, site: Site, pixels: Tensor) -> Floats:
        site.check(clip.model.visual)
        captured = encode_images(clip.model, clip.normalise_pixels(pixels), sites=[site])[site]
        return captured.float().cpu().numpy()
