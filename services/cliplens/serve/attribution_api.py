"""AttributionService: latent attribution, decomposition and steering of an image-text score, and
what each attention head does (TextSpan descriptions, accuracy drop under mean ablation).

Served by the ingress (the Attributor behind a handle) and by each Attributor's direct port (the
replica itself as the backend). Raises the core's typed errors; the transports map them to status
codes.
"""

from __future__ import annotations

from typing import Any

from cliplens.core.decomposition.heads import DEFAULT_PER_HEAD, MAX_PER_HEAD, MAX_POOL_SIZE
from cliplens.core.errors import InvalidInputError
from cliplens.core.steering import LatentEdit, SteerMode, check_edits
from cliplens.serve import responses
from cliplens.serve.backends import AttributionBackend
from cliplens.serve.catalog import Catalog
from cliplens.serve.request_checks import (
    RequestImages,
    bounded,
    check_count,
    check_key,
    check_text,
    check_texts,
)
from cliplens.serve.settings import AppSettings
from cliplens.store import SaeRecord
from cliplens.store.head_results import DEFAULT_MAX_IMAGES, MAX_IMAGES
from cliplens_client.v1 import attribution_pb2

EDIT_MODES: dict[int, SteerMode] = {
    attribution_pb2.EDIT_OP_ADD: "add",
    attribution_pb2.EDIT_OP_SUBTRACT: "subtract",
    attribution_pb2.EDIT_OP_CLAMP: "clamp",
}


class AttributionApi:
    """AttributeLatents, Decompose, Steer, DescribeHeads and RankHeads: checked requests in, response
    messages out."""

    service = attribution_pb2.DESCRIPTOR.services_by_name["AttributionService"]

    def __init__(
        self, settings: AppSettings, catalog: Catalog, images: RequestImages, backend: AttributionBackend
    ) -> None:
        self.settings, self.limits = settings, settings.limits
        self.catalog, self.images, self.backend = catalog, images, backend

    async def attribute_latents(
        self, request: attribution_pb2.AttributeLatentsRequest
    ) -> attribution_pb2.AttributeLatentsResponse:
        record = self.catalog.sae(request.sae_id)
        texts = check_texts(
            "texts", request.texts, self.limits.max_attribution_texts, self.limits.max_text_chars
        )
        top_n = bounded(
            "top_n", request.top_n, self.settings.top_n_default, min(self.limits.max_top_n, record.cfg.d_sae)
        )
        if request.include_patch_maps and not record.cfg.site.endswith(":patches"):
            raise InvalidInputError(
                f"include_patch_maps: SAE '{record.sae_id}' sits at '{record.cfg.site}', not a patch site"
            )
        image = await self.images.fetch("image", request.image)
        result = await self.backend.attribute(record.sae_id, image, texts, top_n, request.include_patch_maps)
        return responses.attribution(record.sae_id, result)

    async def decompose(self, request: attribution_pb2.DecomposeRequest) -> attribution_pb2.DecomposeResponse:
        model_id = self.catalog.check_model(request.model_id)
        text = check_text("text", request.text, self.limits.max_text_chars)
        image = await self.images.fetch("image", request.image)
        return responses.decomposition(model_id, await self.backend.decompose(model_id, image, text))

    async def steer(self, request: attribution_pb2.SteerRequest) -> attribution_pb2.SteerResponse:
        record = self.catalog.sae(request.sae_id)
        edits = self._edits(record, request.edits)
        class_names = check_texts(
            "class_names", request.class_names, self.limits.max_class_names, self.limits.max_text_chars, 0
        )
        image = await self.images.fetch("image", request.image)
        result = await self.backend.steer(record.sae_id, image, edits, class_names)
        return responses.steering(record.sae_id, class_names, result)

    async def describe_heads(
        self, request: attribution_pb2.DescribeHeadsRequest
    ) -> attribution_pb2.DescribeHeadsResponse:
        model_id = self.catalog.check_model(request.model_id)
        pool = check_texts("pool", request.pool, MAX_POOL_SIZE, self.limits.max_text_chars, minimum=0)
        per_head = bounded("per_head", request.per_head, DEFAULT_PER_HEAD, MAX_PER_HEAD)
        answer = await self.backend.describe_heads(model_id, pool, per_head, sorted(set(request.layers)))
        return responses.head_descriptions(answer)

    async def rank_heads(
        self, request: attribution_pb2.RankHeadsRequest
    ) -> attribution_pb2.RankHeadsResponse:
        model_id = self.catalog.check_model(request.model_id)
        dataset = check_key("dataset", request.dataset) if request.dataset else ""
        class_names = check_texts(
            "class_names", request.class_names, self.limits.max_class_names, self.limits.max_text_chars, 0
        )
        max_images = bounded("max_images", request.max_images, DEFAULT_MAX_IMAGES, MAX_IMAGES)
        top_n = bounded("top_n", request.top_n, self.settings.top_n_default, self.limits.max_top_n)
        answer = await self.backend.rank_heads(model_id, dataset, class_names, max_images)
        return responses.head_ranking(answer, top_n)

    def _edits(self, record: SaeRecord, edits: Any) -> list[LatentEdit]:
        """The request's edits, checked by the core (the wire's op enum is checked here)."""
        check_count("edits", len(edits), self.limits.max_edits)
        for i, edit in enumerate(edits):
            if edit.op not in EDIT_MODES:
                raise InvalidInputError(
                    f"edits[{i}].op: must be EDIT_OP_ADD, EDIT_OP_SUBTRACT or EDIT_OP_CLAMP"
                )
        return check_edits([LatentEdit(e.latent, e.value, EDIT_MODES[e.op]) for e in edits], record.cfg.d_sae)
