"""ModelService: the served models and SAEs."""

from __future__ import annotations

from cliplens.serve import responses
from cliplens.serve.actor_types import ModelFacts
from cliplens.serve.backends import EncoderBackend
from cliplens.serve.catalog import Catalog
from cliplens_client.v1 import models_pb2


class ModelApi:
    """ListModels (facts from the Encoder, asked once) and ListSaes (the catalog)."""

    service = models_pb2.DESCRIPTOR.services_by_name["ModelService"]

    def __init__(self, catalog: Catalog, encoder: EncoderBackend) -> None:
        self.catalog, self.encoder = catalog, encoder
        self._facts: list[ModelFacts] | None = None

    async def list_models(self, request: models_pb2.ListModelsRequest) -> models_pb2.ListModelsResponse:
        if self._facts is None:
            self._facts = sorted(await self.encoder.facts(), key=lambda f: f.model_id)
        return models_pb2.ListModelsResponse(models=[responses.model_info(f) for f in self._facts])

    async def list_saes(self, request: models_pb2.ListSaesRequest) -> models_pb2.ListSaesResponse:
        if request.model_id:
            self.catalog.check_model(request.model_id)
        served = [
            s for _, s in sorted(self.catalog.saes.items()) if request.model_id in ("", s.record.cfg.model_id)
        ]
        return models_pb2.ListSaesResponse(saes=[responses.sae_info(s) for s in served])
