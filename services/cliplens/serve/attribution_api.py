"""AttributionService as request -> response: shared by the Serve ingress and the Attributor's direct port.

The API validates the request and builds the response; the work runs in an
:class:`AttributionBackend`: the Attributor replica itself (direct port) or a handle to it (ingress).
Raises the core's typed errors; the caller maps them to status codes (:func:`cliplens.serve.calls.answer`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from ray.serve.handle import DeploymentHandle

from cliplens.core.errors import InvalidInputError
from cliplens.core.steering import LatentEdit, SteerMode
from cliplens.serve import messages
from cliplens.serve.catalog import Catalog
from cliplens.serve.encoder import LabelledImage
from cliplens.serve.inputs import ImageSource, bounded, check_count, check_text, check_texts
from cliplens.serve.results import AttributionResult, DecompositionResult, SteeringResult
from cliplens.serve.settings import Limits
from cliplens.store import SaeRecord
from cliplens_client.v1 import attribution_pb2

EDIT_MODES: dict[int, SteerMode] = {
    attribution_pb2.EDIT_OP_ADD: "add",
    attribution_pb2.EDIT_OP_SUBTRACT: "subtract",
    attribution_pb2.EDIT_OP_CLAMP: "clamp",
}


class AttributionBackend(Protocol):
    """What runs attribution work: the Attributor deployment's methods."""

    async def attribute(
        self, sae_id: str, image: LabelledImage, texts: list[str], top_n: int, patch_maps: bool
    ) -> AttributionResult: ...

    async def decompose(self, model_id: str, image: LabelledImage, text: str) -> DecompositionResult: ...

    async def steer(
        self, sae_id: str, image: LabelledImage, edits: list[LatentEdit], class_names: list[str]
    ) -> SteeringResult: ...


class RemoteAttributor:
    """:class:`AttributionBackend` over a handle to the Attributor, routed by SAE id (multiplexing)."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    async def attribute(
        self, sae_id: str, image: LabelledImage, texts: list[str], top_n: int, patch_maps: bool
    ) -> AttributionResult:
        result: AttributionResult = await self._routed(sae_id).attribute.remote(
            sae_id, image, texts, top_n, patch_maps
        )
        return result

    async def decompose(self, model_id: str, image: LabelledImage, text: str) -> DecompositionResult:
        result: DecompositionResult = await self.handle.decompose.remote(model_id, image, text)
        return result

    async def steer(
        self, sae_id: str, image: LabelledImage, edits: list[LatentEdit], class_names: list[str]
    ) -> SteeringResult:
        result: SteeringResult = await self._routed(sae_id).steer.remote(sae_id, image, edits, class_names)
        return result

    def _routed(self, sae_id: str) -> Any:
        return self.handle.options(multiplexed_model_id=sae_id)


class AttributionApi:
    """AttributeLatents, Decompose and Steer: checked requests in, response messages out."""

    def __init__(
        self, limits: Limits, catalog: Catalog, images: ImageSource, backend: AttributionBackend
    ) -> None:
        self.limits, self.catalog, self.images, self.backend = limits, catalog, images, backend

    async def attribute_latents(
        self, request: attribution_pb2.AttributeLatentsRequest
    ) -> attribution_pb2.AttributeLatentsResponse:
        record = self.catalog.sae(request.sae_id)
        texts = check_texts(
            "texts", request.texts, self.limits.max_attribution_texts, self.limits.max_text_chars
        )
        top_n = bounded("top_n", request.top_n, 10, min(self.limits.max_top_n, record.cfg.d_sae))
        if request.include_patch_maps and not record.cfg.site.endswith(":patches"):
            raise InvalidInputError(
                f"include_patch_maps: SAE '{record.sae_id}' sits at '{record.cfg.site}', not a patch site"
            )
        image = await self.images.fetch("image", request.image)
        result = await self.backend.attribute(record.sae_id, image, texts, top_n, request.include_patch_maps)
        return messages.attribution(record.sae_id, result)

    async def decompose(self, request: attribution_pb2.DecomposeRequest) -> attribution_pb2.DecomposeResponse:
        model_id = self.catalog.check_model(request.model_id)
        text = check_text("text", request.text, self.limits.max_text_chars)
        image = await self.images.fetch("image", request.image)
        return messages.decomposition(model_id, await self.backend.decompose(model_id, image, text))

    async def steer(self, request: attribution_pb2.SteerRequest) -> attribution_pb2.SteerResponse:
        record = self.catalog.sae(request.sae_id)
        edits = self._edits(record, request.edits)
        class_names = check_texts(
            "class_names", request.class_names, self.limits.max_class_names, self.limits.max_text_chars, 0
        )
        image = await self.images.fetch("image", request.image)
        result = await self.backend.steer(record.sae_id, image, edits, class_names)
        return messages.steering(record.sae_id, class_names, result)

    def _edits(self, record: SaeRecord, edits: Any) -> list[LatentEdit]:
        check_count("edits", len(edits), self.limits.max_edits)
        out = []
        for i, edit in enumerate(edits):
            if edit.op not in EDIT_MODES:
                raise InvalidInputError(
                    f"edits[{i}].op: must be EDIT_OP_ADD, EDIT_OP_SUBTRACT or EDIT_OP_CLAMP"
                )
            if edit.latent >= record.cfg.d_sae:
                raise InvalidInputError(f"edits[{i}].latent: {edit.latent} is not in [0, {record.cfg.d_sae})")
            if not np.isfinite(edit.value):
                raise InvalidInputError(f"edits[{i}].value: must be finite")
            out.append(LatentEdit(int(edit.latent), float(edit.value), EDIT_MODES[edit.op]))
        return out
