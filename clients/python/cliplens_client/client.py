"""Blocking client: one method per rpc of the cliplens API."""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy.typing as npt
from google.protobuf.message import Message

from cliplens_client import request_builders as build
from cliplens_client.arrays import FloatDType
from cliplens_client.base_client import BaseClient
from cliplens_client.inputs import ImageInput, LatentEdit
from cliplens_client.results import (
    Decomposition,
    Embeddings,
    FloatArray,
    HeadDescriptions,
    HeadRanking,
    LatentInfo,
    LatentSearch,
    ModelInfo,
    Reconstruction,
    SaeInfo,
    SparseCodes,
    Steering,
    TextAttribution,
    TopActivations,
    activations_from_decode,
    attributions_from_proto,
    codes_from_encode,
    models_from_proto,
    saes_from_proto,
)


class Client(BaseClient):
    """Blocking cliplens client, one gRPC channel per target; use it as a context manager or :meth:`close`.

    ``Client("localhost:9000")`` calls one address; ``Client(["localhost:9002", "localhost:9000"])``
    sends each call to the first of the targets that is up and fails over, in order, on UNAVAILABLE.

    Every method takes ``timeout`` (seconds, retries included; default: the client's ``timeout``)
    and raises :class:`~cliplens_client.errors.RpcError` subclasses on failure.
    """

    _grpc = grpc

    def close(self) -> None:
        for target in self._targets:
            target.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, rpc: str, request: Message, timeout: float | None) -> Any:
        attempts = self._attempts(rpc, timeout)
        while True:
            try:
                return attempts.answered(attempts.send(request))
            except grpc.RpcError as error:
                if delay := attempts.failed(error):
                    time.sleep(delay)

    def embed_images(
        self,
        model_id: str,
        images: Sequence[ImageInput],
        *,
        normalize: bool = False,
        dtype: FloatDType = "float32",
        timeout: float | None = None,
    ) -> Embeddings:
        """Image embeddings ``(n_images, d_embed)``."""
        request = build.embed_images(model_id, images, normalize, dtype)
        return Embeddings.from_proto(self._call("EmbedImages", request, timeout))

    def embed_texts(
        self,
        model_id: str,
        texts: Sequence[str],
        *,
        normalize: bool = False,
        dtype: FloatDType = "float32",
        timeout: float | None = None,
    ) -> Embeddings:
        """Text embeddings ``(n_texts, d_embed)``."""
        request = build.embed_texts(model_id, texts, normalize, dtype)
        return Embeddings.from_proto(self._call("EmbedTexts", request, timeout))

    def encode(
        self,
        sae_id: str,
        *,
        activations: npt.ArrayLike | None = None,
        images: Sequence[ImageInput] | None = None,
        max_active_per_row: int = 0,
        timeout: float | None = None,
    ) -> SparseCodes:
        """Sparse latents of ``activations`` ``(..., d_in)`` or of ``images`` encoded up to the SAE's site."""
        return codes_from_encode(
            self._call("Encode", build.encode(sae_id, activations, images, max_active_per_row), timeout)
        )

    def decode(
        self, sae_id: str, latents: npt.ArrayLike | SparseCodes, *, timeout: float | None = None
    ) -> FloatArray:
        """Activations ``(n, d_in)`` decoded from dense ``(n, d_sae)`` or sparse latents."""
        return activations_from_decode(self._call("Decode", build.decode(sae_id, latents), timeout))

    def reconstruct(
        self,
        sae_id: str,
        *,
        activations: npt.ArrayLike | None = None,
        images: Sequence[ImageInput] | None = None,
        include_latents: bool = False,
        timeout: float | None = None,
    ) -> Reconstruction:
        """The SAE's reconstruction of ``activations`` or ``images``, with its error."""
        request = build.reconstruct(sae_id, activations, images, include_latents)
        return Reconstruction.from_proto(self._call("Reconstruct", request, timeout))

    def attribute_latents(
        self,
        sae_id: str,
        image: ImageInput,
        texts: Sequence[str],
        *,
        top_n: int = 10,
        patch_maps: bool = False,
        timeout: float | None = None,
    ) -> list[TextAttribution]:
        """Per text: the image-text score and the SAE latents that carry it, in request order."""
        request = build.attribute_latents(sae_id, image, texts, top_n, patch_maps)
        return attributions_from_proto(self._call("AttributeLatents", request, timeout))

    def decompose(
        self, model_id: str, image: ImageInput, text: str, *, timeout: float | None = None
    ) -> Decomposition:
        """The image-text score split over the image encoder's layers, heads and patches."""
        return Decomposition.from_proto(
            self._call("Decompose", build.decompose(model_id, image, text), timeout)
        )

    def steer(
        self,
        sae_id: str,
        image: ImageInput,
        edits: Sequence[LatentEdit],
        *,
        class_names: Sequence[str] = (),
        timeout: float | None = None,
    ) -> Steering:
        """The image embedding with latent edits applied, and zero-shot probabilities before and after."""
        request = build.steer(sae_id, image, edits, class_names)
        return Steering.from_proto(self._call("Steer", request, timeout))

    def describe_heads(
        self,
        model_id: str,
        *,
        pool: Sequence[str] = (),
        per_head: int = 0,
        layers: Sequence[int] = (),
        timeout: float | None = None,
    ) -> HeadDescriptions:
        """TextSpan descriptions of every head of ``layers`` (all when empty), ``per_head`` each (0: 5).

        ``pool`` holds the candidate descriptions (empty: the pool shipped with cliplens). The server
        computes an answer once per model and inputs and then reads it from its store; the first call
        for new inputs can take minutes, so give it a generous ``timeout`` (e.g. 600).
        """
        request = build.describe_heads(model_id, pool, per_head, layers)
        return HeadDescriptions.from_proto(self._call("DescribeHeads", request, timeout))

    def rank_heads(
        self,
        model_id: str,
        *,
        dataset: str = "",
        class_names: Sequence[str] = (),
        max_images: int = 0,
        top_n: int = 0,
        timeout: float | None = None,
    ) -> HeadRanking:
        """The ``top_n`` heads (0: 10) whose mean-ablation costs the most zero-shot accuracy.

        ``dataset`` is the store key of a labelled parquet (empty: the shipped CIFAR-10 sample),
        ``class_names`` name its integer labels (empty: the labels are names), ``max_images`` bounds the
        images used (0: 2,000). Computed once per model and inputs, then read from the server's store;
        the first call for new inputs can take minutes, so give it a generous ``timeout`` (e.g. 600).
        """
        request = build.rank_heads(model_id, dataset, class_names, max_images, top_n)
        return HeadRanking.from_proto(self._call("RankHeads", request, timeout))

    def top_activations(
        self, sae_id: str, latent: int, *, k: int = 16, timeout: float | None = None
    ) -> TopActivations:
        """The ``k`` data-set inputs on which ``latent`` fires most."""
        request = build.top_activations(sae_id, latent, k)
        return TopActivations.from_proto(self._call("TopActivations", request, timeout))

    def latent_info(self, sae_id: str, latent: int, *, timeout: float | None = None) -> LatentInfo:
        """Labels, alignment, clarity and activation histogram of ``latent``."""
        return LatentInfo.from_proto(self._call("LatentInfo", build.latent_info(sae_id, latent), timeout))

    def search_latents(
        self, sae_id: str, text: str, *, top_n: int = 10, timeout: float | None = None
    ) -> LatentSearch:
        """The ``top_n`` latents best aligned with ``text``."""
        request = build.search_latents(sae_id, text, top_n)
        return LatentSearch.from_proto(self._call("SearchLatents", request, timeout))

    def list_models(self, *, timeout: float | None = None) -> list[ModelInfo]:
        """The registered CLIP models."""
        return models_from_proto(self._call("ListModels", build.list_models(), timeout))

    def list_saes(self, model_id: str = "", *, timeout: float | None = None) -> list[SaeInfo]:
        """The registered SAEs, all or those of ``model_id``."""
        return saes_from_proto(self._call("ListSaes", build.list_saes(model_id), timeout))
