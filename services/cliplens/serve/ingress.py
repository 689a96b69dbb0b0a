"""The gRPC ingress: one method per rpc (Serve routes by method name), plus grpc.health.v1 Check.

Every call is authenticated (when auth is on), validated, timed into the latency histogram and
mapped to a status code; a failing request only ever fails itself.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve.grpc_util import RayServegRPCContext
from ray.serve.handle import DeploymentHandle

from cliplens.core.errors import InvalidInputError
from cliplens.serve import messages
from cliplens.serve.attribution_api import AttributionApi, RemoteAttributor
from cliplens.serve.auth import TokenAuth
from cliplens.serve.calls import R, answer
from cliplens.serve.catalog import Catalog
from cliplens.serve.encoder import ModelFacts
from cliplens.serve.feature_api import FeatureApi
from cliplens.serve.inputs import ImageSource, check_count, check_texts, float_array
from cliplens.serve.reconstruction import reconstruction_error
from cliplens.serve.settings import AppSettings
from cliplens.store import SaeRecord, open_store
from cliplens_client.arrays import pack_array
from cliplens_client.v1 import attribution_pb2, common_pb2, encoder_pb2, features_pb2, models_pb2, sae_pb2

SERVICES = tuple(
    f"cliplens.v1.{name}"
    for name in ("EncoderService", "SaeService", "AttributionService", "FeatureService", "ModelService")
)


@serve.deployment(name="CliplensIngress", max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.5})
class CliplensIngress:
    def __init__(
        self,
        settings: AppSettings,
        encoder: DeploymentHandle,
        sae: DeploymentHandle,
        attributor: DeploymentHandle,
        companions: Sequence[DeploymentHandle] = (),
    ) -> None:
        """``companions``: deployments that serve beside the ingress (the FeatureGateway's direct
        port); they are bound here only so that they are part of the application."""
        self.limits = settings.limits
        self.settings = settings
        store = open_store(settings.store_uri)
        self.catalog = Catalog(settings, store)
        bucket = open_store(settings.image_store_uri) if settings.image_store_uri else None
        self.images = ImageSource(settings.limits, bucket)
        self.feature_api = FeatureApi(settings, self.catalog, store, attributor)
        self.attribution_api = AttributionApi(
            settings.limits, self.catalog, self.images, RemoteAttributor(attributor)
        )
        self.auth = TokenAuth(settings.auth)
        self.encoder, self.sae = encoder, sae
        self._model_facts: list[ModelFacts] | None = None

    # -- health ------------------------------------------------------------------------------------
    async def Check(
        self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext
    ) -> Message:
        """grpc.health.v1: SERVING for the whole server ("") and each cliplens service; no auth."""
        if request.service and request.service not in SERVICES:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service '{request.service}'")
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext
    ) -> AsyncIterator[Message]:
        """grpc.health.v1 Watch: the status now (SERVICE_UNKNOWN for an unknown service), then the
        stream stays open until the client leaves. A replica's status does not change while it runs;
        one that stops ends the stream, which watchers read as a change. No auth."""
        known = not request.service or request.service in SERVICES
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if known
            else health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        )
        yield health_pb2.HealthCheckResponse(status=status)
        await asyncio.Event().wait()

    # -- EncoderService ----------------------------------------------------------------------------
    async def EmbedImages(
        self, request: encoder_pb2.EmbedImagesRequest, grpc_context: RayServegRPCContext
    ) -> Message:
        async def work() -> encoder_pb2.EmbedImagesResponse:
            model_id = self.catalog.check_model(request.model_id)
            images = await self._read_images("images", list(request.images))
            values = await self.encoder.embed_images.remote(model_id, images)
            return encoder_pb2.EmbedImagesResponse(
                model_id=model_id, embeddings=messages.embeddings(values, request.normalize, request.dtype)
            )

        return await self._call("EmbedImages", grpc_context, encoder_pb2.EmbedImagesResponse, work)

    async def EmbedTexts(
        self, request: encoder_pb2.EmbedTextsRequest, grpc_context: RayServegRPCContext
    ) -> Message:
        async def work() -> encoder_pb2.EmbedTextsResponse:
            model_id = self.catalog.check_model(request.model_id)
            texts = check_texts("texts", request.texts, self.limits.max_texts, self.limits.max_text_chars)
            values = await self.encoder.embed_texts.remote(model_id, texts)
            return encoder_pb2.EmbedTextsResponse(
                model_id=model_id, embeddings=messages.embeddings(values, request.normalize, request.dtype)
            )

        return await self._call("EmbedTexts", grpc_context, encoder_pb2.EmbedTextsResponse, work)

    # -- SaeService --------------------------------------------------------------------------------
    async def Encode(self, request: sae_pb2.EncodeRequest, grpc_context: RayServegRPCContext) -> Message:
        async def work() -> sae_pb2.EncodeResponse:
            record = self.catalog.sae(request.sae_id)
            rows, batch_shape = await self._sae_rows(record, request.input)
            latents = await self._sae(record).encode.remote(record.sae_id, rows, request.max_active_per_row)
            return sae_pb2.EncodeResponse(
                sae_id=record.sae_id, batch_shape=batch_shape, latents=messages.sparse_latents(latents)
            )

        return await self._call("Encode", grpc_context, sae_pb2.EncodeResponse, work)

    async def Decode(self, request: sae_pb2.DecodeRequest, grpc_context: RayServegRPCContext) -> Message:
        async def work() -> sae_pb2.DecodeResponse:
            record = self.catalog.sae(request.sae_id)
            dense = self._dense_latents(record, request)
            values = await self._sae(record).decode.remote(record.sae_id, dense)
            return sae_pb2.DecodeResponse(sae_id=record.sae_id, activations=pack_array(values))

        return await self._call("Decode", grpc_context, sae_pb2.DecodeResponse, work)

    async def Reconstruct(
        self, request: sae_pb2.ReconstructRequest, grpc_context: RayServegRPCContext
    ) -> Message:
        async def work() -> sae_pb2.ReconstructResponse:
            record = self.catalog.sae(request.sae_id)
            rows, batch_shape = await self._sae_rows(record, request.input)
            result = await self._sae(record).reconstruct.remote(record.sae_id, rows, request.include_latents)
            return sae_pb2.ReconstructResponse(
                sae_id=record.sae_id,
                batch_shape=batch_shape,
                reconstruction=pack_array(result.reconstruction),
                latents=messages.sparse_latents(result.latents) if result.latents is not None else None,
                error=reconstruction_error(rows, result.reconstruction),
            )

        return await self._call("Reconstruct", grpc_context, sae_pb2.ReconstructResponse, work)

    # -- AttributionService ------------------------------------------------------------------------
    async def AttributeLatents(
        self, request: attribution_pb2.AttributeLatentsRequest, grpc_context: RayServegRPCContext
    ) -> Message:
        work = functools.partial(self.attribution_api.attribute_latents, request)
        return await self._call(
            "AttributeLatents", grpc_context, attribution_pb2.AttributeLatentsResponse, work
        )

    async def Decompose(
        self, request: attribution_pb2.DecomposeRequest, grpc_context: RayServegRPCContext
    ) -> Message:
        work = functools.partial(self.attribution_api.decompose, request)
        return await self._call("Decompose", grpc_context, attribution_pb2.DecomposeResponse, work)

    async def Steer(
        self, request: attribution_pb2.SteerRequest, grpc_context: RayServegRPCContext
    ) -> Message:
        work = functools.partial(self.attribution_api.steer, request)
        return await self._call("Steer", grpc_context, attribution_pb2.SteerResponse, work)

    # -- FeatureService ----------------------------------------------------------------------------
    async def TopActivations(
        self, request: features_pb2.TopActivationsRequest, grpc_context: RayServegRPCContext
    ) -> Message:
        work = functools.partial(self.feature_api.top_activations, request)
        return await self._call("TopActivations", grpc_context, features_pb2.TopActivationsResponse, work)

    async def LatentInfo(
        self, request: features_pb2.LatentInfoRequest, grpc_context: RayServegRPCContext
    ) -> Message:
        work = functools.partial(self.feature_api.latent_info, request)
        return await self._call("LatentInfo", grpc_context, features_pb2.LatentInfoResponse, work)

    async def SearchLatents(
        self, request: features_pb2.SearchLatentsRequest, grpc_context: RayServegRPCContext
    ) -> Message:
        work = functools.partial(self.feature_api.search_latents, request)
        return await self._call("SearchLatents", grpc_context, features_pb2.SearchLatentsResponse, work)

    # -- ModelService ------------------------------------------------------------------------------
    async def ListModels(
        self, request: models_pb2.ListModelsRequest, grpc_context: RayServegRPCContext
    ) -> Message:
        async def work() -> models_pb2.ListModelsResponse:
            if self._model_facts is None:
                self._model_facts = await self.encoder.facts.remote()
            facts = sorted(self._model_facts, key=lambda f: f.model_id)
            return models_pb2.ListModelsResponse(models=[messages.model_info(f) for f in facts])

        return await self._call("ListModels", grpc_context, models_pb2.ListModelsResponse, work)

    async def ListSaes(
        self, request: models_pb2.ListSaesRequest, grpc_context: RayServegRPCContext
    ) -> Message:
        async def work() -> models_pb2.ListSaesResponse:
            if request.model_id:
                self.catalog.check_model(request.model_id)
            served = [
                s
                for _, s in sorted(self.catalog.saes.items())
                if request.model_id in ("", s.record.cfg.model_id)
            ]
            return models_pb2.ListSaesResponse(saes=[messages.sae_info(s) for s in served])

        return await self._call("ListSaes", grpc_context, models_pb2.ListSaesResponse, work)

    # -- plumbing ----------------------------------------------------------------------------------
    async def _call(
        self, method: str, context: RayServegRPCContext, empty: type[R], work: Callable[[], Awaitable[R]]
    ) -> Message:
        return await answer(method, self.auth, context, empty, work)

    def _sae(self, record: SaeRecord) -> Any:
        return self.sae.options(multiplexed_model_id=record.sae_id)

    async def _read_images(self, field: str, images: list[common_pb2.Image]) -> list[tuple[str, bytes]]:
        check_count(field, len(images), self.limits.max_images)
        return [await self.images.fetch(f"{field}[{i}]", image) for i, image in enumerate(images)]

    async def _sae_rows(self, record: SaeRecord, sae_input: sae_pb2.SaeInput) -> tuple[np.ndarray, list[int]]:
        """Rows ``(n, d_in)`` of an SaeInput and their leading shape."""
        source = sae_input.WhichOneof("source")
        if source == "activations":
            array = float_array(
                "input.activations", sae_input.activations, self.limits.max_rows, record.cfg.d_in
            )
        elif source == "images":
            images = await self._read_images("input.images.images", list(sae_input.images.images))
            array = await self.encoder.site_activations.remote(record.cfg.model_id, record.cfg.site, images)
        else:
            raise InvalidInputError("input: set either activations or images")
        shape = list(array.shape[:-1])
        rows = array.reshape(-1, record.cfg.d_in)
        if rows.shape[0] > self.limits.max_rows:
            raise InvalidInputError(
                f"input: {rows.shape[0]} rows exceeds the limit of {self.limits.max_rows}"
            )
        return rows, shape

    def _dense_latents(self, record: SaeRecord, request: sae_pb2.DecodeRequest) -> np.ndarray:
        d_sae = record.cfg.d_sae
        kind = request.WhichOneof("latents")
        if kind == "dense":
            dense = float_array("dense", request.dense, self.limits.max_rows, d_sae)
            if dense.ndim != 2:
                raise InvalidInputError(f"dense: shape {dense.shape} must be (n, {d_sae})")
            return dense
        if kind != "sparse":
            raise InvalidInputError("latents: set either dense or sparse")
        sparse = request.sparse
        if sparse.d_sae != d_sae:
            raise InvalidInputError(f"sparse.d_sae: {sparse.d_sae} differs from the SAE's {d_sae} latents")
        check_count("sparse.rows", len(sparse.rows), self.limits.max_rows)
        dense = np.zeros((len(sparse.rows), d_sae), np.float32)
        for i, row in enumerate(sparse.rows):
            indices = np.asarray(row.indices, dtype=np.int64)
            if len(row.values) != indices.size:
                raise InvalidInputError(
                    f"sparse.rows[{i}]: {indices.size} indices but {len(row.values)} values"
                )
            if indices.size and (indices[-1] >= d_sae or np.any(np.diff(indices) <= 0)):
                raise InvalidInputError(f"sparse.rows[{i}].indices: must increase strictly and be < {d_sae}")
            dense[i, indices] = row.values
        if not np.isfinite(dense).all():
            raise InvalidInputError("sparse: values must be finite")
        return dense
