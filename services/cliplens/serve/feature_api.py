"""FeatureService as request -> response: shared by the Serve ingress and the direct feature port.

Raises the core's typed errors (unknown SAE or latent, bad field); the caller maps them to status
codes (:func:`cliplens.serve.calls.answer`).
"""

from __future__ import annotations

from typing import Any

from ray.serve.handle import DeploymentHandle

from cliplens.serve import messages
from cliplens.serve.catalog import Catalog
from cliplens.serve.features import FeatureIndex
from cliplens.serve.inputs import bounded, check_text
from cliplens.serve.settings import AppSettings
from cliplens.store import ObjectStore
from cliplens_client.v1 import features_pb2


class FeatureApi:
    """TopActivations (Redis, else the store), LatentInfo and SearchLatents (labels from the Attributor)."""

    def __init__(
        self, settings: AppSettings, catalog: Catalog, store: ObjectStore, attributor: DeploymentHandle
    ) -> None:
        self.settings, self.limits = settings, settings.limits
        self.catalog = catalog
        self.features = FeatureIndex(store, settings.redis_url)
        self.attributor = attributor

    async def top_activations(
        self, request: features_pb2.TopActivationsRequest
    ) -> features_pb2.TopActivationsResponse:
        record = self.catalog.sae(request.sae_id)
        latent = self.catalog.check_latent(record.sae_id, request.latent)
        k = bounded("k", request.k, self.settings.top_k_default, self.limits.max_top_k)
        answer = await self.features.top(record.sae_id, record.run_id, latent, k)
        return messages.top_activations(record.sae_id, latent, answer.entries, answer.from_redis)

    async def latent_info(self, request: features_pb2.LatentInfoRequest) -> features_pb2.LatentInfoResponse:
        record = self.catalog.sae(request.sae_id)
        latent = self.catalog.check_latent(record.sae_id, request.latent)
        answer = await self.features.stats(record.sae_id, record.run_id, latent)
        labels = (await self._attributor(record.sae_id).labels.remote(record.sae_id, [latent], 10))[0]
        stats = answer.stats
        return features_pb2.LatentInfoResponse(
            sae_id=record.sae_id,
            latent=latent,
            labels=messages.labels(labels),
            alignment=labels[0][1] if labels else 0.0,
            firing_rate=stats.fires / stats.rows if stats.rows else 0.0,
            histogram=messages.histogram(stats),
            source=messages.source(answer.from_redis),
            degraded=not answer.from_redis,
            label_counts=stats.label_counts,
        )

    async def search_latents(
        self, request: features_pb2.SearchLatentsRequest
    ) -> features_pb2.SearchLatentsResponse:
        record = self.catalog.sae(request.sae_id)
        text = check_text("text", request.text, self.limits.max_text_chars)
        top_n = bounded("top_n", request.top_n, 10, min(self.limits.max_top_n, record.cfg.d_sae))
        matches = await self._attributor(record.sae_id).search.remote(record.sae_id, text, top_n)
        return features_pb2.SearchLatentsResponse(
            sae_id=record.sae_id,
            matches=[
                features_pb2.LatentMatch(
                    latent=m.latent, alignment=m.alignment, labels=messages.labels(m.labels)
                )
                for m in matches
            ],
            source=features_pb2.FEATURE_SOURCE_STORE,
        )

    def _attributor(self, sae_id: str) -> Any:
        return self.attributor.options(multiplexed_model_id=sae_id)
