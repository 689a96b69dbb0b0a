"""Every rpc of the cliplens API as one method, written once (see :mod:`cliplens_client.calls`): the
remote clients make the calls over gRPC; the server's web pages make them in process."""

from __future__ import annotations

from collections.abc import Sequence

import numpy.typing as npt

from cliplens_client import results
from cliplens_client.arrays import FloatDType, dtype_enum, pack_array
from cliplens_client.calls import RpcCall, RpcMethod
from cliplens_client.errors import InvalidRequestError
from cliplens_client.inputs import (
    MAX_CLASS_NAMES,
    MAX_PER_HEAD,
    MAX_POOL,
    MAX_RANK_IMAGES,
    MAX_RANKED_HEADS,
    ImageInput,
    LatentEdit,
    bounded_int,
    image_message,
    image_messages,
    non_empty_string,
    non_empty_texts,
    optional_texts,
    sae_input,
)
from cliplens_client.v1 import attribution_pb2, encoder_pb2, features_pb2, models_pb2, sae_pb2


class ApiCalls:
    """One method per rpc; each builds its :class:`RpcCall` and returns what the subclass's ``_call``
    makes of it: the result (blocking), or a coroutine of it (asyncio)."""

    @RpcMethod
    def embed_images(
        self,
        model_id: str,
        images: Sequence[ImageInput],
        *,
        normalize: bool = False,
        dtype: FloatDType = "float32",
        timeout: float | None = None,
    ) -> RpcCall[results.Embeddings]:
        """Image embeddings ``(n_images, d_embed)``."""
        request = encoder_pb2.EmbedImagesRequest(
            model_id=non_empty_string(model_id, "model_id"),
            images=image_messages(images),
            normalize=normalize,
            dtype=dtype_enum(dtype),
        )
        return RpcCall("EmbedImages", request, results.Embeddings.from_proto, timeout)

    @RpcMethod
    def embed_texts(
        self,
        model_id: str,
        texts: Sequence[str],
        *,
        normalize: bool = False,
        dtype: FloatDType = "float32",
        timeout: float | None = None,
    ) -> RpcCall[results.Embeddings]:
        """Text embeddings ``(n_texts, d_embed)``."""
        request = encoder_pb2.EmbedTextsRequest(
            model_id=non_empty_string(model_id, "model_id"),
            texts=non_empty_texts(texts),
            normalize=normalize,
            dtype=dtype_enum(dtype),
        )
        return RpcCall("EmbedTexts", request, results.Embeddings.from_proto, timeout)

    @RpcMethod
    def encode(
        self,
        sae_id: str,
        *,
        activations: npt.ArrayLike | None = None,
        images: Sequence[ImageInput] | None = None,
        max_active_per_row: int = 0,
        timeout: float | None = None,
    ) -> RpcCall[results.SparseCodes]:
        """Sparse latents of ``activations`` ``(..., d_in)`` or of ``images`` encoded up to the SAE's site."""
        request = sae_pb2.EncodeRequest(
            sae_id=non_empty_string(sae_id, "sae_id"),
            input=sae_input(activations, images),
            max_active_per_row=bounded_int(max_active_per_row, "max_active_per_row"),
        )
        return RpcCall("Encode", request, results.codes_from_encode, timeout)

    @RpcMethod
    def decode(
        self, sae_id: str, latents: npt.ArrayLike | results.SparseCodes, *, timeout: float | None = None
    ) -> RpcCall[results.FloatArray]:
        """Activations ``(n, d_in)`` decoded from dense ``(n, d_sae)`` or sparse latents."""
        if isinstance(latents, results.SparseCodes):
            request = sae_pb2.DecodeRequest(
                sae_id=non_empty_string(sae_id, "sae_id"), sparse=latents.to_proto()
            )
        else:
            dense = pack_array(latents)
            if len(dense.shape) != 2:
                raise InvalidRequestError(
                    f"dense latents must have shape (n, d_sae), got {tuple(dense.shape)}"
                )
            request = sae_pb2.DecodeRequest(sae_id=non_empty_string(sae_id, "sae_id"), dense=dense)
        return RpcCall("Decode", request, results.activations_from_decode, timeout)

    @RpcMethod
    def reconstruct(
        self,
        sae_id: str,
        *,
        activations: npt.ArrayLike | None = None,
        images: Sequence[ImageInput] | None = None,
        include_latents: bool = False,
        timeout: float | None = None,
    ) -> RpcCall[results.Reconstruction]:
        """The SAE's reconstruction of ``activations`` or ``images``, with its error."""
        request = sae_pb2.ReconstructRequest(
            sae_id=non_empty_string(sae_id, "sae_id"),
            input=sae_input(activations, images),
            include_latents=include_latents,
        )
        return RpcCall("Reconstruct", request, results.Reconstruction.from_proto, timeout)

    @RpcMethod
    def attribute_latents(
        self,
        sae_id: str,
        image: ImageInput,
        texts: Sequence[str],
        *,
        top_n: int = 10,
        patch_maps: bool = False,
        timeout: float | None = None,
    ) -> RpcCall[list[results.TextAttribution]]:
        """Per text: the image-text score and the SAE latents that carry it, in request order."""
        request = attribution_pb2.AttributeLatentsRequest(
            sae_id=non_empty_string(sae_id, "sae_id"),
            image=image_message(image),
            texts=non_empty_texts(texts),
            top_n=bounded_int(top_n, "top_n", 1),
            include_patch_maps=patch_maps,
        )
        return RpcCall("AttributeLatents", request, results.attributions_from_proto, timeout)

    @RpcMethod
    def decompose(
        self, model_id: str, image: ImageInput, text: str, *, timeout: float | None = None
    ) -> RpcCall[results.Decomposition]:
        """The image-text score split over the image encoder's layers, heads and patches."""
        request = attribution_pb2.DecomposeRequest(
            model_id=non_empty_string(model_id, "model_id"),
            image=image_message(image),
            text=non_empty_string(text, "text"),
        )
        return RpcCall("Decompose", request, results.Decomposition.from_proto, timeout)

    @RpcMethod
    def steer(
        self,
        sae_id: str,
        image: ImageInput,
        edits: Sequence[LatentEdit],
        *,
        class_names: Sequence[str] = (),
        timeout: float | None = None,
    ) -> RpcCall[results.Steering]:
        """The image embedding with latent edits applied, and zero-shot probabilities before and after."""
        if not edits:
            raise InvalidRequestError("edits must not be empty")
        request = attribution_pb2.SteerRequest(
            sae_id=non_empty_string(sae_id, "sae_id"),
            image=image_message(image),
            edits=[edit.to_proto() for edit in edits],
            class_names=non_empty_texts(class_names, "class_names") if class_names else [],
        )
        return RpcCall("Steer", request, results.Steering.from_proto, timeout)

    @RpcMethod
    def describe_heads(
        self,
        model_id: str,
        *,
        pool: Sequence[str] = (),
        per_head: int = 0,
        layers: Sequence[int] = (),
        timeout: float | None = None,
    ) -> RpcCall[results.HeadDescriptions]:
        """TextSpan descriptions of every head of ``layers`` (all when empty), ``per_head`` each (0: 5).

        ``pool`` holds the candidate descriptions (empty: the pool shipped with cliplens). The server
        computes an answer once per model and inputs and then reads it from its store; the first call
        for new inputs can take minutes, so give it a generous ``timeout`` (e.g. 600).
        """
        texts = optional_texts(pool, "pool", 1, MAX_POOL)
        count = bounded_int(per_head, "per_head", 0, MAX_PER_HEAD)
        if texts and count > len(texts):
            raise InvalidRequestError(f"per_head must be at most the pool size {len(texts)}, got {count}")
        request = attribution_pb2.DescribeHeadsRequest(
            model_id=non_empty_string(model_id, "model_id"),
            pool=texts,
            per_head=count,
            layers=[bounded_int(layer, f"layers[{index}]") for index, layer in enumerate(layers)],
        )
        return RpcCall("DescribeHeads", request, results.HeadDescriptions.from_proto, timeout)

    @RpcMethod
    def rank_heads(
        self,
        model_id: str,
        *,
        dataset: str = "",
        class_names: Sequence[str] = (),
        max_images: int = 0,
        top_n: int = 0,
        timeout: float | None = None,
    ) -> RpcCall[results.HeadRanking]:
        """The ``top_n`` heads (0: 10) whose mean-ablation costs the most zero-shot accuracy.

        ``dataset`` is the store key of a labelled parquet (empty: the shipped CIFAR-10 sample),
        ``class_names`` name its integer labels (empty: the labels are names), ``max_images`` bounds the
        images used (0: 2,000). Computed once per model and inputs, then read from the server's store;
        the first call for new inputs can take minutes, so give it a generous ``timeout`` (e.g. 600).
        """
        if not isinstance(dataset, str) or (dataset and not dataset.strip()):
            raise InvalidRequestError(
                f"dataset must be a store key, or empty for the shipped sample: {dataset!r}"
            )
        request = attribution_pb2.RankHeadsRequest(
            model_id=non_empty_string(model_id, "model_id"),
            dataset=dataset,
            class_names=optional_texts(class_names, "class_names", 2, MAX_CLASS_NAMES),
            max_images=bounded_int(max_images, "max_images", 0, MAX_RANK_IMAGES),
            top_n=bounded_int(top_n, "top_n", 0, MAX_RANKED_HEADS),
        )
        return RpcCall("RankHeads", request, results.HeadRanking.from_proto, timeout)

    @RpcMethod
    def top_activations(
        self, sae_id: str, latent: int, *, k: int = 16, timeout: float | None = None
    ) -> RpcCall[results.TopActivations]:
        """The ``k`` data-set inputs on which ``latent`` fires most."""
        request = features_pb2.TopActivationsRequest(
            sae_id=non_empty_string(sae_id, "sae_id"),
            latent=bounded_int(latent, "latent"),
            k=bounded_int(k, "k", 1),
        )
        return RpcCall("TopActivations", request, results.TopActivations.from_proto, timeout)

    @RpcMethod
    def latent_info(
        self, sae_id: str, latent: int, *, timeout: float | None = None
    ) -> RpcCall[results.LatentInfo]:
        """Labels, alignment, clarity and activation histogram of ``latent``."""
        request = features_pb2.LatentInfoRequest(
            sae_id=non_empty_string(sae_id, "sae_id"), latent=bounded_int(latent, "latent")
        )
        return RpcCall("LatentInfo", request, results.LatentInfo.from_proto, timeout)

    @RpcMethod
    def search_latents(
        self, sae_id: str, text: str, *, top_n: int = 10, timeout: float | None = None
    ) -> RpcCall[results.LatentSearch]:
        """The ``top_n`` latents best aligned with ``text``."""
        request = features_pb2.SearchLatentsRequest(
            sae_id=non_empty_string(sae_id, "sae_id"),
            text=non_empty_string(text, "text"),
            top_n=bounded_int(top_n, "top_n", 1),
        )
        return RpcCall("SearchLatents", request, results.LatentSearch.from_proto, timeout)

    @RpcMethod
    def list_models(self, *, timeout: float | None = None) -> RpcCall[list[results.ModelInfo]]:
        """The registered CLIP models."""
        return RpcCall("ListModels", models_pb2.ListModelsRequest(), results.models_from_proto, timeout)

    @RpcMethod
    def list_saes(
        self, model_id: str = "", *, timeout: float | None = None
    ) -> RpcCall[list[results.SaeInfo]]:
        """The registered SAEs, all or those of ``model_id``."""
        if not isinstance(model_id, str):
            raise InvalidRequestError(f"model_id must be a string, got {model_id!r}")
        return RpcCall(
            "ListSaes", models_pb2.ListSaesRequest(model_id=model_id), results.saes_from_proto, timeout
        )
