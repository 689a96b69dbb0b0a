"""SaeService: encode, decode and reconstruct activation rows (given, or of images) with an SAE."""

from __future__ import annotations

import numpy as np

from cliplens.core.errors import InvalidInputError
from cliplens.serve import responses
from cliplens.serve.actor_types import Floats
from cliplens.serve.backends import EncoderBackend, SaeBackend
from cliplens.serve.catalog import Catalog
from cliplens.serve.request_checks import RequestImages, dense_latents, float_array
from cliplens.serve.settings import AppSettings
from cliplens.store import SaeRecord
from cliplens_client.arrays import pack_array
from cliplens_client.v1 import sae_pb2


class SaeApi:
    """Encode, Decode and Reconstruct over the SaeRunner (and the Encoder for rows of images)."""

    service = sae_pb2.DESCRIPTOR.services_by_name["SaeService"]

    def __init__(
        self,
        settings: AppSettings,
        catalog: Catalog,
        images: RequestImages,
        encoder: EncoderBackend,
        sae: SaeBackend,
    ) -> None:
        self.limits, self.catalog, self.images = settings.limits, catalog, images
        self.encoder, self.sae = encoder, sae

    async def encode(self, request: sae_pb2.EncodeRequest) -> sae_pb2.EncodeResponse:
        record = self.catalog.sae(request.sae_id)
        rows, batch_shape = await self._rows(record, request.input)
        latents = await self.sae.encode(record.sae_id, rows, request.max_active_per_row)
        return sae_pb2.EncodeResponse(
            sae_id=record.sae_id, batch_shape=batch_shape, latents=responses.sparse_latents(latents)
        )

    async def decode(self, request: sae_pb2.DecodeRequest) -> sae_pb2.DecodeResponse:
        record = self.catalog.sae(request.sae_id)
        dense = dense_latents(request, record.cfg.d_sae, self.limits.max_rows)
        values = await self.sae.decode(record.sae_id, dense)
        return sae_pb2.DecodeResponse(sae_id=record.sae_id, activations=pack_array(values))

    async def reconstruct(self, request: sae_pb2.ReconstructRequest) -> sae_pb2.ReconstructResponse:
        record = self.catalog.sae(request.sae_id)
        rows, batch_shape = await self._rows(record, request.input)
        result = await self.sae.reconstruct(record.sae_id, rows, request.include_latents)
        return sae_pb2.ReconstructResponse(
            sae_id=record.sae_id,
            batch_shape=batch_shape,
            reconstruction=pack_array(result.reconstruction),
            latents=responses.sparse_latents(result.latents) if result.latents is not None else None,
            error=responses.reconstruction_error(rows, result.reconstruction),
        )

    async def _rows(self, record: SaeRecord, sae_input: sae_pb2.SaeInput) -> tuple[Floats, list[int]]:
        """Rows ``(n, d_in)`` of an SaeInput (activations, or images through the Encoder) and their
        leading shape."""
        source = sae_input.WhichOneof("source")
        if source == "activations":
            array = float_array(
                "input.activations", sae_input.activations, self.limits.max_rows, record.cfg.d_in
            )
        elif source == "images":
            images = await self.images.fetch_all("input.images.images", sae_input.images.images)
            array = await self.encoder.site_activations(record.cfg.model_id, record.cfg.site, images)
        else:
            raise InvalidInputError("input: set either activations or images")
        rows = array.reshape(-1, record.cfg.d_in)
        if rows.shape[0] > self.limits.max_rows:
            raise InvalidInputError(
                f"input: {rows.shape[0]} rows exceeds the limit of {self.limits.max_rows}"
            )
        return np.ascontiguousarray(rows), list(array.shape[:-1])
