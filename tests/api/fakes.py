"""Fakes of the deployments behind the API classes, and a small real catalog (a local store with SAEs).

The API classes are tested against these without Ray: each fake records its calls and answers with
values the tests can check. ``Gate`` holds calls until a test releases them (deterministic
concurrency, no timing).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cliplens.core.decomposition.ablation import HeadAblationResult
from cliplens.core.decomposition.heads import HeadDescription, HeadDescriptions, HeadRanking
from cliplens.core.decomposition.textspan import TextSpanPick
from cliplens.core.sae import ReluConfig, TopKConfig, build_sae
from cliplens.core.steering import LatentEdit
from cliplens.serve.actor_types import (
    AttributionResult,
    DecompositionResult,
    Floats,
    Label,
    LatentMatchResult,
    LatentShare,
    LayerShare,
    ModelFacts,
    Neighbour,
    Reconstructed,
    RequestImage,
    SparseRows,
    SteeringResult,
    TextShare,
)
from cliplens.serve.catalog import Catalog
from cliplens.serve.feature_lookups import StatsAnswer, TopAnswer
from cliplens.serve.settings import AppSettings
from cliplens.store import LatentStats, LocalStore, TopKEntry, TopKRow, save_sae_to_store, write_topk_results
from cliplens.store.head_results import CachedHeads

MODEL, FINAL, PATCHES = "m", "final-sae", "patch-sae"
D_IN, D_SAE = 8, 16


def catalog_store(root: Path) -> LocalStore:
    """A store with a final-site TopK SAE (with a feature index) and a patch-site ReLU SAE (without)."""
    store = LocalStore(root)
    final = TopKConfig(d_in=D_IN, d_sae=D_SAE, k=2, model_id=MODEL, site="final", dataset_id="run")
    patch = ReluConfig(d_in=D_IN, d_sae=D_SAE, model_id=MODEL, site="resid:1:patches", dataset_id="run")
    save_sae_to_store(store, FINAL, build_sae(final, seed=0), {"l0": 2.0})
    save_sae_to_store(store, PATCHES, build_sae(patch, seed=0), {})
    write_topk_results(store, "run", FINAL, [TopKRow(0, 0, "a", 1.0, "cat")])
    return store


def settings(store: LocalStore, **changes: Any) -> AppSettings:
    return AppSettings.model_validate({"models": [MODEL], "store_uri": store.uri, **changes})


def catalog(store: LocalStore) -> Catalog:
    return Catalog(settings(store), store)


@dataclass
class Gate:
    """Holds every call until :meth:`open`; ``arrived`` counts the calls waiting or passed."""

    arrived: int = 0
    _open: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def pass_(self) -> None:
        async with self._changed:
            self.arrived += 1
            self._changed.notify_all()
        await self._open.wait()

    async def until_arrived(self, n: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.arrived >= n)

    def open(self) -> None:
        self._open.set()


@dataclass
class FakeEncoder:
    """Embeddings whose rows say which input they came from: row i is ``[i, i, ...]`` + 1."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    width: int = 4

    async def facts(self) -> list[ModelFacts]:
        self.calls.append(("facts", None))
        return [ModelFacts(MODEL, "ViT-test", "a fake", self.width, 32, 2, 4)]

    async def embed_images(self, model_id: str, images: list[RequestImage]) -> Floats:
        self.calls.append(("embed_images", [image.field for image in images]))
        return self._rows(len(images))

    async def embed_texts(self, model_id: str, texts: list[str]) -> Floats:
        self.calls.append(("embed_texts", texts))
        return self._rows(len(texts))

    async def site_activations(self, model_id: str, site: str, images: list[RequestImage]) -> Floats:
        self.calls.append(("site_activations", site))
        shape = (len(images), 3, D_IN) if site.endswith(":patches") else (len(images), D_IN)
        return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)

    def _rows(self, n: int) -> Floats:
        return np.repeat(np.arange(1, n + 1, dtype=np.float32)[:, None], self.width, axis=1)


@dataclass
class FakeSae:
    """Encode keeps the two largest values of a row; decode doubles the latents' first D_IN columns."""

    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def encode(self, sae_id: str, rows: Floats, max_active: int) -> SparseRows:
        self.calls.append(("encode", (sae_id, rows.shape, max_active)))
        return _sparse(rows)

    async def decode(self, sae_id: str, dense: Floats) -> Floats:
        self.calls.append(("decode", dense.copy()))
        return dense[:, :D_IN] * 2

    async def reconstruct(self, sae_id: str, rows: Floats, include_latents: bool) -> Reconstructed:
        self.calls.append(("reconstruct", (rows.shape, include_latents)))
        return Reconstructed(rows * 0.5, _sparse(rows) if include_latents else None)


def _sparse(rows: Floats) -> SparseRows:
    indices = [np.sort(np.argsort(row)[-2:]).astype(np.uint32) for row in rows]
    return SparseRows(
        D_SAE, indices, [row[i].astype(np.float32) for row, i in zip(rows, indices, strict=True)]
    )


@dataclass
class FakeAttributor:
    """Answers every AttributionBackend call with values derived from its arguments."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    gate: Gate | None = None

    async def attribute(
        self, sae_id: str, image: RequestImage, texts: list[str], top_n: int, patch_maps: bool
    ) -> AttributionResult:
        self.calls.append(("attribute", (sae_id, image.field, texts, top_n, patch_maps)))
        if self.gate is not None:
            await self.gate.pass_()
        grid = 2 if patch_maps else 0
        texts_out = [
            TextShare(
                text,
                0.25 * (t + 1),
                [
                    LatentShare(k, 1.0, 0.1 * (top_n - k), [("a label", 0.5)], np.ones((2, 2), np.float32) if grid else None)
                    for k in range(top_n)
                ],
                0.01,
                0.02,
            )
            for t, text in enumerate(texts)
        ]  # fmt: skip
        return AttributionResult(texts_out, grid)

    async def decompose(self, model_id: str, image: RequestImage, text: str) -> DecompositionResult:
        self.calls.append(("decompose", (model_id, text)))
        return DecompositionResult(0.5, 0.1, [LayerShare(0.2, 0.2, [0.1, 0.1])], np.zeros((2, 2), np.float32))

    async def steer(
        self, sae_id: str, image: RequestImage, edits: list[LatentEdit], class_names: list[str]
    ) -> SteeringResult:
        self.calls.append(("steer", (sae_id, edits, class_names)))
        n = len(class_names)
        return SteeringResult(np.zeros(4, np.float32), np.ones(4, np.float32), [1 / n] * n, [1 / n] * n)

    async def labels(self, sae_id: str, latents: list[int], n: int) -> list[list[Label]]:
        self.calls.append(("labels", (sae_id, latents, n)))
        if self.gate is not None:
            await self.gate.pass_()
        return [[(f"label {i}", 1.0 - 0.1 * i) for i in range(n)] for _ in latents]

    async def neighbours(self, sae_id: str, latent: int, n: int) -> list[Neighbour]:
        """The ``n`` latents after ``latent``, with cosines falling from 0.9 in steps of 0.1."""
        self.calls.append(("neighbours", (sae_id, latent, n)))
        if self.gate is not None:
            await self.gate.pass_()
        return [((latent + 1 + i) % D_SAE, 0.9 - 0.1 * i) for i in range(n)]

    async def search(self, sae_id: str, text: str, top_n: int) -> list[LatentMatchResult]:
        self.calls.append(("search", (sae_id, text, top_n)))
        return [LatentMatchResult(k, 1.0 - 0.01 * k, [("x", 0.3)]) for k in range(top_n)]

    async def describe_heads(
        self, model_id: str, pool: list[str], per_head: int, layers: list[int]
    ) -> CachedHeads[HeadDescriptions]:
        self.calls.append(("describe_heads", (model_id, pool, per_head, layers)))
        picks = tuple(TextSpanPick(f"text {i}", i, 0.1) for i in range(per_head))
        heads = tuple(HeadDescription(layer, 0, picks, 2.0) for layer in layers or [0])
        return CachedHeads(HeadDescriptions(model_id, 10, per_head, heads), "heads/m/x.json", True)

    async def rank_heads(
        self, model_id: str, dataset: str, class_names: list[str], max_images: int
    ) -> CachedHeads[HeadRanking]:
        self.calls.append(("rank_heads", (model_id, dataset, class_names, max_images)))
        heads = tuple(HeadAblationResult(0, h, 0.5 - 0.1 * h, 0.1 * h) for h in range(4))[::-1]
        ranking = HeadRanking(model_id, max_images, ("cat", "dog"), 0.5, heads)
        return CachedHeads(ranking, "heads/m/y.json", False)


@dataclass
class FakeFeatures:
    """A feature index that answers from Redis unless ``degraded``."""

    degraded: bool = False
    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def top(self, sae_id: str, run_id: str, latent: int, k: int) -> TopAnswer:
        self.calls.append(("top", (sae_id, run_id, latent, k)))
        return TopAnswer([TopKEntry(f"key-{i}", 1.0 - 0.1 * i, "cat") for i in range(k)], not self.degraded)

    async def stats(self, sae_id: str, run_id: str, latent: int) -> StatsAnswer:
        self.calls.append(("stats", (sae_id, run_id, latent)))
        stats = LatentStats(5, 20, [0.0, 1.0, 2.0], [3, 2], {"cat": 4, "dog": 1})
        return StatsAnswer(stats, not self.degraded)
