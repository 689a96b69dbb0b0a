"""EncoderService: image and text embeddings, checked requests in and response messages out."""

from __future__ import annotations

from cliplens.serve import responses
from cliplens.serve.backends import EncoderBackend
from cliplens.serve.catalog import Catalog
from cliplens.serve.request_checks import RequestImages, check_texts
from cliplens.serve.settings import AppSettings
from cliplens_client.v1 import encoder_pb2


class EncoderApi:
    """EmbedImages and EmbedTexts over the Encoder deployment."""

    service = encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"]

    def __init__(
        self, settings: AppSettings, catalog: Catalog, images: RequestImages, encoder: EncoderBackend
    ) -> None:
        self.limits, self.catalog, self.images, self.encoder = settings.limits, catalog, images, encoder

    async def embed_images(self, request: encoder_pb2.EmbedImagesRequest) -> encoder_pb2.EmbedImagesResponse:
        model_id = self.catalog.check_model(request.model_id)
        images = await self.images.fetch_all("images", request.images)
        values = await self.encoder.embed_images(model_id, images)
        return encoder_pb2.EmbedImagesResponse(
            model_id=model_id, embeddings=responses.embeddings(values, request.normalize, request.dtype)
        )

    async def embed_texts(self, request: encoder_pb2.EmbedTextsRequest) -> encoder_pb2.EmbedTextsResponse:
        model_id = self.catalog.check_model(request.model_id)
        texts = check_texts("texts", request.texts, self.limits.max_texts, self.limits.max_text_chars)
        values = await self.encoder.embed_texts(model_id, texts)
        return encoder_pb2.EmbedTextsResponse(
            model_id=model_id, embeddings=responses.embeddings(values, request.normalize, request.dtype)
        )
