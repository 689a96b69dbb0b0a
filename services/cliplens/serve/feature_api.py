"""FeatureService: what the offline feature index knows about latents, and text search over them.

TopActivations and LatentInfo's statistics come from Redis, or the store when Redis is down or
cold (:class:`cliplens.serve.feature_lookups.FeatureLookups`); labels, neighbours and search come from
the Attributor.
"""

from __future__ import annotations

import asyncio

from cliplens.serve import responses
from cliplens.serve.backends import AttributionBackend
from cliplens.serve.catalog import Catalog
from cliplens.serve.feature_lookups import FeatureLookups
from cliplens.serve.request_checks import bounded, check_text
from cliplens.serve.settings import AppSettings
from cliplens_client.v1 import features_pb2


class FeatureApi:
    """TopActivations, LatentInfo and SearchLatents."""

    service = features_pb2.DESCRIPTOR.services_by_name["FeatureService"]

    def __init__(
        self,
        settings: AppSettings,
        catalog: Catalog,
        features: FeatureLookups,
        attributor: AttributionBackend,
    ) -> None:
        self.settings, self.limits = settings, settings.limits
        self.catalog, self.features, self.attributor = catalog, features, attributor

    async def top_activations(
        self, request: features_pb2.TopActivationsRequest
    ) -> features_pb2.TopActivationsResponse:
        record = self.catalog.indexed_sae(request.sae_id)
        latent = self.catalog.check_latent(record.sae_id, request.latent)
        k = bounded("k", request.k, self.settings.top_k_default, self.limits.max_top_k)
        answer = await self.features.top(record.sae_id, record.run_id, latent, k)
        return responses.top_activations(record.sae_id, latent, answer.entries, answer.from_redis)

    async def latent_info(self, request: features_pb2.LatentInfoRequest) -> features_pb2.LatentInfoResponse:
        record = self.catalog.indexed_sae(request.sae_id)
        latent = self.catalog.check_latent(record.sae_id, request.latent)
        answer = await self.features.stats(record.sae_id, record.run_id, latent)
        labels, neighbours = await asyncio.gather(
            self.attributor.labels(record.sae_id, [latent], self.settings.labels_in_latent_info),
            self.attributor.neighbours(record.sae_id, latent, self.settings.neighbours_in_latent_info),
        )
        return responses.latent_info(
            record.sae_id, latent, labels[0], neighbours, answer.stats, answer.from_redis
        )

    async def search_latents(
        self, request: features_pb2.SearchLatentsRequest
    ) -> features_pb2.SearchLatentsResponse:
        record = self.catalog.sae(request.sae_id)
        text = check_text("text", request.text, self.limits.max_text_chars)
        top_n = bounded(
            "top_n", request.top_n, self.settings.top_n_default, min(self.limits.max_top_n, record.cfg.d_sae)
        )
        matches = await self.attributor.search(record.sae_id, text, top_n)
        return responses.search_latents(record.sae_id, matches)
