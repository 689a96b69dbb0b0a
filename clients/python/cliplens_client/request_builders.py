"""One builder per rpc: validates the caller's arguments and returns the request message.

Shared by :class:`~cliplens_client.Client` and :class:`~cliplens_client.AsyncClient`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy.typing as npt

from cliplens_client.arrays import FloatDType, dtype_enum, pack_array
from cliplens_client.errors import InvalidRequestError
from cliplens_client.inputs import (
    ImageInput,
    LatentEdit,
    image_message,
    image_messages,
    non_empty_texts,
    sae_input,
)
from cliplens_client.results import SparseCodes
from cliplens_client.v1 import attribution_pb2, encoder_pb2, features_pb2, models_pb2, sae_pb2

# Bounds of the heads rpcs, as attribution.proto states them (0 asks for the server's default).
MAX_POOL = 10_000  # DescribeHeadsRequest.pool
MAX_PER_HEAD = 20  # DescribeHeadsRequest.per_head
MAX_CLASS_NAMES = 1_000  # RankHeadsRequest.class_names (2 at least)
MAX_RANK_IMAGES = 5_000  # RankHeadsRequest.max_images
MAX_RANKED_HEADS = 1_000  # RankHeadsRequest.top_n


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _count(value: int, what: str, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidRequestError(f"{what} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise InvalidRequestError(f"{what} must be an integer <= {maximum}, got {value!r}")
    return value


def _optional_texts(texts: Sequence[str], what: str, minimum: int, maximum: int) -> list[str]:
    """None (the server's default) or ``minimum`` to ``maximum`` non-empty strings."""
    if not isinstance(texts, str) and not texts:
        return []
    checked = non_empty_texts(texts, what)
    if not minimum <= len(checked) <= maximum:
        raise InvalidRequestError(f"{what} must hold {minimum} to {maximum} entries, got {len(checked)}")
    return checked


def embed_images(
    model_id: str, images: Sequence[ImageInput], normalize: bool, dtype: FloatDType
) -> encoder_pb2.EmbedImagesRequest:
    return encoder_pb2.EmbedImagesRequest(
        model_id=_name(model_id, "model_id"),
        images=image_messages(images),
        normalize=normalize,
        dtype=dtype_enum(dtype),
    )


def embed_texts(
    model_id: str, texts: Sequence[str], normalize: bool, dtype: FloatDType
) -> encoder_pb2.EmbedTextsRequest:
    return encoder_pb2.EmbedTextsRequest(
        model_id=_name(model_id, "model_id"),
        texts=non_empty_texts(texts),
        normalize=normalize,
        dtype=dtype_enum(dtype),
    )


def encode(
    sae_id: str,
    activations: npt.ArrayLike | None,
    images: Sequence[ImageInput] | None,
    max_active_per_row: int,
) -> sae_pb2.EncodeRequest:
    return sae_pb2.EncodeRequest(
        sae_id=_name(sae_id, "sae_id"),
        input=sae_input(activations, images),
        max_active_per_row=_count(max_active_per_row, "max_active_per_row"),
    )


def decode(sae_id: str, latents: npt.ArrayLike | SparseCodes) -> sae_pb2.DecodeRequest:
    if isinstance(latents, SparseCodes):
        return sae_pb2.DecodeRequest(sae_id=_name(sae_id, "sae_id"), sparse=latents.to_proto())
    dense = pack_array(latents)
    if len(dense.shape) != 2:
        raise InvalidRequestError(f"dense latents must have shape (n, d_sae), got {tuple(dense.shape)}")
    return sae_pb2.DecodeRequest(sae_id=_name(sae_id, "sae_id"), dense=dense)


def reconstruct(
    sae_id: str,
    activations: npt.ArrayLike | None,
    images: Sequence[ImageInput] | None,
    include_latents: bool,
) -> sae_pb2.ReconstructRequest:
    return sae_pb2.ReconstructRequest(
        sae_id=_name(sae_id, "sae_id"), input=sae_input(activations, images), include_latents=include_latents
    )


def attribute_latents(
    sae_id: str, image: ImageInput, texts: Sequence[str], top_n: int, patch_maps: bool
) -> attribution_pb2.AttributeLatentsRequest:
    return attribution_pb2.AttributeLatentsRequest(
        sae_id=_name(sae_id, "sae_id"),
        image=image_message(image),
        texts=non_empty_texts(texts),
        top_n=_count(top_n, "top_n", 1),
        include_patch_maps=patch_maps,
    )


def decompose(model_id: str, image: ImageInput, text: str) -> attribution_pb2.DecomposeRequest:
    return attribution_pb2.DecomposeRequest(
        model_id=_name(model_id, "model_id"), image=image_message(image), text=_name(text, "text")
    )


def steer(
    sae_id: str, image: ImageInput, edits: Sequence[LatentEdit], class_names: Sequence[str]
) -> attribution_pb2.SteerRequest:
    if not edits:
        raise InvalidRequestError("edits must not be empty")
    return attribution_pb2.SteerRequest(
        sae_id=_name(sae_id, "sae_id"),
        image=image_message(image),
        edits=[edit.to_proto() for edit in edits],
        class_names=non_empty_texts(class_names, "class_names") if class_names else [],
    )


def describe_heads(
    model_id: str, pool: Sequence[str], per_head: int, layers: Sequence[int]
) -> attribution_pb2.DescribeHeadsRequest:
    texts = _optional_texts(pool, "pool", 1, MAX_POOL)
    count = _count(per_head, "per_head", 0, MAX_PER_HEAD)
    if texts and count > len(texts):
        raise InvalidRequestError(f"per_head must be at most the pool size {len(texts)}, got {count}")
    return attribution_pb2.DescribeHeadsRequest(
        model_id=_name(model_id, "model_id"),
        pool=texts,
        per_head=count,
        layers=[_count(layer, f"layers[{index}]") for index, layer in enumerate(layers)],
    )


def rank_heads(
    model_id: str, dataset: str, class_names: Sequence[str], max_images: int, top_n: int
) -> attribution_pb2.RankHeadsRequest:
    if not isinstance(dataset, str) or (dataset and not dataset.strip()):
        raise InvalidRequestError(
            f"dataset must be a store key, or empty for the shipped sample: {dataset!r}"
        )
    return attribution_pb2.RankHeadsRequest(
        model_id=_name(model_id, "model_id"),
        dataset=dataset,
        class_names=_optional_texts(class_names, "class_names", 2, MAX_CLASS_NAMES),
        max_images=_count(max_images, "max_images", 0, MAX_RANK_IMAGES),
        top_n=_count(top_n, "top_n", 0, MAX_RANKED_HEADS),
    )


def top_activations(sae_id: str, latent: int, k: int) -> features_pb2.TopActivationsRequest:
    return features_pb2.TopActivationsRequest(
        sae_id=_name(sae_id, "sae_id"), latent=_count(latent, "latent"), k=_count(k, "k", 1)
    )


def latent_info(sae_id: str, latent: int) -> features_pb2.LatentInfoRequest:
    return features_pb2.LatentInfoRequest(sae_id=_name(sae_id, "sae_id"), latent=_count(latent, "latent"))


def search_latents(sae_id: str, text: str, top_n: int) -> features_pb2.SearchLatentsRequest:
    return features_pb2.SearchLatentsRequest(
        sae_id=_name(sae_id, "sae_id"), text=_name(text, "text"), top_n=_count(top_n, "top_n", 1)
    )


def list_saes(model_id: str) -> models_pb2.ListSaesRequest:
    if not isinstance(model_id, str):
        raise InvalidRequestError(f"model_id must be a string, got {model_id!r}")
    return models_pb2.ListSaesRequest(model_id=model_id)


def list_models() -> models_pb2.ListModelsRequest:
    return models_pb2.ListModelsRequest()
