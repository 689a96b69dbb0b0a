"""Attribution deployment: latent attribution, component decomposition, steering, latent labels and
neighbours.

It holds the served CLIP models (gradients flow through them) and SAEs by id (multiplexed).
AttributeLatents requests are batched across clients: requests for the same SAE, texts and
patch-map choice run as one batch of images; requests whose deadline passed while they queued are
dropped. With ``attribution_port`` set, each replica also serves AttributionService on that port
itself (:class:`cliplens.serve.direct_port.DirectPortHost`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from ray import serve
from torch import Tensor

from cliplens.core.attribution import LatentAttribution, attribute_latents
from cliplens.core.decomposition import decompose, direct_effects
from cliplens.core.models import LoadedClip
from cliplens.core.naming import search_latents
from cliplens.core.sae import Sae, nearest_latents
from cliplens.core.steering import LatentEdit, steer_and_classify
from cliplens.serve.actor_types import (
    AttributionResult,
    CachedHeads,
    DecompositionResult,
    HeadDescriptions,
    HeadRanking,
    Label,
    LatentMatchResult,
    LatentShare,
    LayerShare,
    Neighbour,
    RequestImage,
    SteeringResult,
    TextShare,
)
from cliplens.serve.attribution_api import AttributionApi
from cliplens.serve.auth import TokenAuth
from cliplens.serve.backends import takes_deadline
from cliplens.serve.batching import (
    QueueDepth,
    configure_batching,
    group_indices,
    in_time,
    raise_if_failed,
    record_batch,
)
from cliplens.serve.catalog import Catalog
from cliplens.serve.direct_port import DirectPortHost
from cliplens.serve.encoder import image_pixels
from cliplens.serve.labels import LatentLabeller
from cliplens.serve.loading import load_models
from cliplens.serve.request_checks import RequestImages
from cliplens.serve.rpc_frame import current_deadline
from cliplens.serve.sae_cache import multiplexed_sae_getter
from cliplens.serve.settings import AppSettings
from cliplens.serve.text_cache import TextEmbeddingCache
from cliplens.store.head_results import describe_heads_cached, rank_heads_cached


@dataclass(frozen=True)
class AttributionJob:
    """One AttributeLatents request queued for a batch."""

    sae_id: str
    pixels: Tensor
    texts: tuple[str, ...]
    top_n: int
    patch_maps: bool
    deadline: float | None

    @property
    def group(self) -> tuple[str, tuple[str, ...], bool]:
        return self.sae_id, self.texts, self.patch_maps


@serve.deployment(name="Attributor")
class Attributor:
    async def __init__(self, settings: AppSettings) -> None:  # type: ignore[misc]  # Ray actors allow it
        self.settings = settings
        self.models = load_models(settings)
        self.store = store = settings.store()
        self.catalog = Catalog(settings, store)
        device = next(iter(self.models.values())).device
        self.get_sae = multiplexed_sae_getter(settings, store, device)
        self.labeller = LatentLabeller()
        self.texts = TextEmbeddingCache(settings.text_cache_size)
        self.pool = ThreadPoolExecutor(settings.preprocess_threads, thread_name_prefix="preprocess")
        configure_batching(self._attribute_batch, settings.attribution_batch)
        self.queue = QueueDepth("attribute_latents")
        if settings.attribution_port.port:
            api = AttributionApi(
                settings, self.catalog, RequestImages(settings.limits, settings.image_store()), self
            )
            self.port = await DirectPortHost.start([api], TokenAuth(settings.auth), settings.attribution_port)

    @takes_deadline
    async def attribute(
        self, sae_id: str, image: RequestImage, texts: list[str], top_n: int, patch_maps: bool
    ) -> AttributionResult:
        clip = self._clip_of(sae_id)
        pixels = await self._pixels(clip, image)
        job = AttributionJob(sae_id, pixels, tuple(texts), top_n, patch_maps, current_deadline())
        with self.queue.waiting_for_batch():
            return raise_if_failed(await self._attribute_batch(job))

    @takes_deadline
    async def decompose(self, model_id: str, image: RequestImage, text: str) -> DecompositionResult:
        clip = self.models[model_id]
        pixels = await self._pixels(clip, image)
        return await asyncio.to_thread(lambda: _decompose(clip, pixels, self.texts.embed(clip, [text])[0]))

    @takes_deadline
    async def steer(
        self, sae_id: str, image: RequestImage, edits: list[LatentEdit], class_names: list[str]
    ) -> SteeringResult:
        clip, sae = self._clip_of(sae_id), await self.get_sae(sae_id)
        pixels = await self._pixels(clip, image)
        return await asyncio.to_thread(_steer, clip, sae, pixels, edits, class_names)

    @takes_deadline
    async def labels(self, sae_id: str, latents: list[int], n: int) -> list[list[Label]]:
        clip, sae = self._clip_of(sae_id), await self.get_sae(sae_id)
        return await asyncio.to_thread(self.labeller.labels, sae_id, clip, sae, latents, n)

    @takes_deadline
    async def neighbours(self, sae_id: str, latent: int, n: int) -> list[Neighbour]:
        """The ``n`` latents nearest to ``latent`` by decoder cosine, best first."""
        sae = await self.get_sae(sae_id)
        return await asyncio.to_thread(nearest_latents, sae, latent, n)

    @takes_deadline
    async def search(self, sae_id: str, text: str, top_n: int) -> list[LatentMatchResult]:
        clip, sae = self._clip_of(sae_id), await self.get_sae(sae_id)
        scores = await asyncio.to_thread(search_latents, clip, sae, text, top_n)
        labels = await self.labels(sae_id, [s.latent for s in scores], self.settings.labels_per_latent)
        return [LatentMatchResult(s.latent, s.score, lab) for s, lab in zip(scores, labels, strict=True)]

    @takes_deadline
    async def describe_heads(
        self, model_id: str, pool: list[str], per_head: int, layers: list[int]
    ) -> CachedHeads[HeadDescriptions]:
        """TextSpan over the shipped sample, from the store's cache or computed once and stored."""
        return await asyncio.to_thread(
            describe_heads_cached,
            self.store,
            self.models[model_id],
            pool=pool or None,
            per_head=per_head,
            layers=layers or None,
        )

    @takes_deadline
    async def rank_heads(
        self, model_id: str, dataset: str, class_names: list[str], max_images: int
    ) -> CachedHeads[HeadRanking]:
        """Heads by accuracy drop under mean ablation on a labelled set in the store, cached likewise."""
        return await asyncio.to_thread(
            rank_heads_cached,
            self.store,
            self.models[model_id],
            dataset=dataset or None,
            class_names=class_names,
            max_images=max_images,
        )

    @serve.batch
    async def _attribute_batch(self, jobs: list[AttributionJob]) -> list[AttributionResult | Exception]:
        results, live = in_time("attribute_latents", jobs, lambda job: job.deadline)
        record_batch("attribute_latents", len(live), len(live))
        groups = group_indices(live, lambda i: jobs[i].group)
        for (sae_id, _, _), members in groups.items():
            sae = await self.get_sae(sae_id)
            indices = [live[m] for m in members]
            outcomes = await asyncio.to_thread(self._attribute_group, sae_id, sae, [jobs[i] for i in indices])
            for i, outcome in zip(indices, outcomes, strict=True):
                results[i] = outcome
        return results

    def _attribute_group(self, sae_id: str, sae: Sae, jobs: list[AttributionJob]) -> list[AttributionResult]:
        """One group's attribution, with labels, in one worker thread."""
        clip = self._clip_of(sae_id)
        first = jobs[0]
        texts = self.texts.embed(clip, first.texts)
        images = torch.cat([job.pixels for job in jobs])
        attribution = attribute_latents(clip, sae, images, texts)
        chosen = [_top_latents(attribution, b, job.top_n) for b, job in enumerate(jobs)]
        maps = None
        if first.patch_maps:
            union = sorted({k for per_text in chosen for latents in per_text for k in latents})
            maps = attribute_latents(clip, sae, images, texts, patch_latents=union)
        n = self.settings.labels_per_latent if self.catalog.saes[sae_id].has_feature_index else 0

        def labels_of(latents: list[int]) -> list[list[Label]]:
            return self.labeller.labels(sae_id, clip, sae, latents, n)

        return [_result(attribution, maps, b, job, chosen[b], labels_of) for b, job in enumerate(jobs)]

    def _clip_of(self, sae_id: str) -> LoadedClip:
        return self.models[self.catalog.sae(sae_id).cfg.model_id]

    async def _pixels(self, clip: LoadedClip, image: RequestImage) -> Tensor:
        """The model's input for one image; decoding and normalisation both run in the pool."""
        max_pixels = self.settings.limits.max_image_pixels
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.pool, lambda: clip.normalise_pixels(image_pixels(clip, [image], max_pixels))
        )


def _top_latents(attribution: LatentAttribution, image: int, top_n: int) -> list[list[int]]:
    """Per text, the ``top_n`` latents by |attribution|, largest first."""
    scores = attribution.attributions[image].abs()
    n = min(top_n, scores.shape[-1])
    return [row.tolist() for row in scores.topk(n, dim=-1).indices]


def _result(
    attribution: LatentAttribution,
    maps: LatentAttribution | None,
    b: int,
    job: AttributionJob,
    chosen: list[list[int]],
    labels_of: Callable[[list[int]], list[list[Label]]],
) -> AttributionResult:
    activations = attribution.latent_activations[b].float().cpu()
    grid = 0
    texts = []
    for t, text in enumerate(job.texts):
        attributions = attribution.attributions[b, t].float().cpu()
        error = float(attribution.error[b, t])
        total = abs(error) + float(attributions.abs().sum())
        latents = []
        for k, labels in zip(chosen[t], labels_of(chosen[t]), strict=True):
            patch_map = None
            if maps is not None and maps.patch_maps is not None:
                column = maps.patch_latents.index(k)
                flat = maps.patch_maps[b, t, column].float().cpu()
                grid = round(flat.numel() ** 0.5)
                patch_map = flat.reshape(grid, grid).numpy()
            latents.append(LatentShare(k, float(activations[k]), float(attributions[k]), labels, patch_map))
        share = abs(error) / total if total > 0 else 0.0
        texts.append(TextShare(text, float(attribution.scores[b, t]), latents, error, share))
    return AttributionResult(texts, grid)


def _decompose(clip: LoadedClip, pixels: Tensor, text_embedding: Tensor) -> DecompositionResult:
    with torch.no_grad():
        scores = direct_effects(decompose(clip.model, pixels), text_embedding)
    heads = scores.per_head()[0, :, :, 0].cpu()
    layers = [
        LayerShare(float(heads[layer].sum()), float(scores.mlp[0, layer, 0]), heads[layer].tolist())
        for layer in range(scores.n_layers)
    ]
    patches = scores.per_patch()[0, :, 0].float().cpu()
    grid = round(patches.numel() ** 0.5)
    return DecompositionResult(
        float(scores.total()[0, 0]),
        float(scores.embedding[0, 0]),
        layers,
        patches.reshape(grid, grid).numpy(),
    )


def _steer(
    clip: LoadedClip, sae: Sae, pixels: Tensor, edits: list[LatentEdit], class_names: list[str]
) -> SteeringResult:
    outcome = steer_and_classify(clip, sae, pixels, edits, class_names)
    return SteeringResult(
        outcome.original[0].cpu().numpy(),
        outcome.steered[0].cpu().numpy(),
        outcome.probabilities_before[0].tolist(),
        outcome.probabilities_after[0].tolist(),
    )
