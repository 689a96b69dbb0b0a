"""What each web page shows, fetched with the API's own calls (:class:`LocalCalls`): no page computes
anything the API does not serve, and a page's calls run concurrently."""

from __future__ import annotations

import asyncio
import io
import math
from dataclasses import dataclass

import numpy as np

from cliplens.core.errors import NotFoundError
from cliplens.core.sites import Site
from cliplens.serve.request_checks import RequestImages, decode_rgb
from cliplens.serve.settings import Limits, WebSettings
from cliplens.serve.web.local_calls import LocalCalls
from cliplens_client import (
    Decomposition,
    LatentEdit,
    LatentInfo,
    ObjectKey,
    SaeInfo,
    Steering,
    TextAttribution,
    TopActivations,
)
from cliplens_client.inputs import ImageInput
from cliplens_client.v1 import common_pb2

THUMBNAIL_PX = 160


@dataclass(frozen=True)
class LatentView:
    """The latent page: the SAE, the latent's statistics and labels, and its top inputs."""

    sae: SaeInfo
    info: LatentInfo
    top: TopActivations

    @property
    def patches(self) -> bool:
        return Site.parse(self.sae.site).patches


@dataclass(frozen=True)
class PatchMap:
    """A latent's activation over the patch grid of one input (row-major, ``(grid, grid)``)."""

    input_id: str
    activations: np.ndarray


@dataclass(frozen=True)
class Explanation:
    """The explain page: per prompt the latents that carry the score, and the first prompt's
    decomposition by layer, head and patch."""

    sae: SaeInfo
    prompts: list[str]
    attributions: list[TextAttribution]
    decomposition: Decomposition


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    media_type: str


class WebPages:
    """The data of every page, from the API calls of this replica."""

    def __init__(self, calls: LocalCalls, images: RequestImages, settings: WebSettings) -> None:
        self.calls, self.images, self.settings = calls, images, settings

    async def saes(self) -> list[SaeInfo]:
        return await self.calls.list_saes()

    async def sae(self, sae_id: str) -> SaeInfo:
        """One served SAE; :class:`NotFoundError` naming the served ones otherwise."""
        saes = await self.saes()
        for sae in saes:
            if sae.id == sae_id:
                return sae
        raise NotFoundError(f"unknown SAE '{sae_id}'; served: {', '.join(s.id for s in saes) or 'none'}")

    async def latent(self, sae_id: str, latent: int) -> LatentView:
        sae = await self.sae(sae_id)
        info, top = await asyncio.gather(
            self.calls.latent_info(sae_id, latent), self.calls.top_activations(sae_id, latent)
        )
        return LatentView(sae, info, top)

    async def patch_maps(self, sae_id: str, latent: int) -> list[PatchMap]:
        """The latent over the patches of each of its top inputs (patch-site SAEs)."""
        sae = await self.sae(sae_id)
        if not Site.parse(sae.site).patches:
            raise NotFoundError(f"SAE '{sae_id}' is at site '{sae.site}', which has no patches")
        top = await self.calls.top_activations(sae_id, latent)
        keys = [item.input_id for item in top.inputs]
        if not keys:
            return []
        codes = await self.calls.encode(sae_id, images=[ObjectKey(key) for key in keys])
        dense = codes.to_dense()[..., latent].reshape(len(keys), -1)
        grid = math.isqrt(dense.shape[1])
        return [PatchMap(key, row.reshape(grid, grid)) for key, row in zip(keys, dense, strict=True)]

    async def latents_of_input(self, sae_id: str, key: str) -> list[tuple[int, float]]:
        """The latents that fire most on one input of the data set (largest over patches), best first."""
        await self.sae(sae_id)
        codes = await self.calls.encode(sae_id, images=[ObjectKey(key)])
        strongest = codes.to_dense().reshape(-1, codes.d_sae).max(axis=0)
        order = np.argsort(-strongest, kind="stable")[: self.settings.top_latents]
        return [(int(i), float(strongest[i])) for i in order if strongest[i] > 0]

    async def explain(self, sae_id: str, image: ImageInput, prompts: list[str]) -> Explanation:
        """AttributeLatents for every prompt and Decompose for the first, concurrently."""
        sae = await self.sae(sae_id)
        attributions, decomposition = await asyncio.gather(
            self.calls.attribute_latents(
                sae_id,
                image,
                prompts,
                top_n=self.settings.top_latents,
                patch_maps=Site.parse(sae.site).patches,
            ),
            self.calls.decompose(sae.model_id, image, prompts[0]),
        )
        return Explanation(sae, prompts, attributions, decomposition)

    async def steer(
        self, sae_id: str, image: ImageInput, edits: list[LatentEdit], class_names: list[str]
    ) -> Steering:
        return await self.calls.steer(sae_id, image, edits, class_names=class_names)

    async def thumbnail(self, key: str) -> Thumbnail:
        """A data-set image from the image bucket, shrunk to at most :data:`THUMBNAIL_PX` a side."""
        return await asyncio.to_thread(self._thumbnail, key)

    def _thumbnail(self, key: str) -> Thumbnail:
        data = self.images.read("image", common_pb2.Image(object_key=key))
        image = decode_rgb("image", data, self.images.limits.max_image_pixels)
        if max(image.size) <= THUMBNAIL_PX and data.startswith(b"\xff\xd8\xff"):
            return Thumbnail(data, "image/jpeg")
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return Thumbnail(buffer.getvalue(), "image/png")


def upload_limit(limits: Limits) -> int:
    """The largest explain form accepted: the image limit plus room for the other fields."""
    return limits.max_image_bytes + 64 * 1024
