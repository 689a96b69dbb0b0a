"""Typed results of the API calls, built from the response messages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from cliplens_client.arrays import unpack_array
from cliplens_client.errors import MalformedResponseError
from cliplens_client.v1 import attribution_pb2, common_pb2, encoder_pb2, features_pb2, models_pb2, sae_pb2

FloatArray = npt.NDArray[np.floating]
FEATURE_SOURCES: dict[int, str] = {
    features_pb2.FEATURE_SOURCE_REDIS: "redis",
    features_pb2.FEATURE_SOURCE_STORE: "store",
}


def _optional_array(parent: Message, field: str) -> FloatArray | None:
    return unpack_array(getattr(parent, field)) if parent.HasField(field) else None


def _source(value: int) -> str:
    """``"redis"``, ``"store"`` or ``"unspecified"``."""
    return FEATURE_SOURCES.get(value, "unspecified")


@dataclass(frozen=True)
class Embeddings:
    """CLIP embeddings, one row per input: ``vectors`` has shape ``(n, d_embed)``."""

    model_id: str
    vectors: FloatArray

    @classmethod
    def from_proto(
        cls, message: encoder_pb2.EmbedImagesResponse | encoder_pb2.EmbedTextsResponse
    ) -> Embeddings:
        return cls(message.model_id, unpack_array(message.embeddings))


@dataclass(frozen=True)
class SparseCodes:
    """SAE latents of a batch of rows: row ``i`` has activations ``values[i]`` at latents ``indices[i]``.

    ``batch_shape`` is the leading shape of the inputs (its product is the number of rows).
    """

    d_sae: int
    batch_shape: tuple[int, ...]
    indices: list[npt.NDArray[np.int64]]
    values: list[npt.NDArray[np.float32]]

    @classmethod
    def from_proto(cls, latents: common_pb2.SparseLatents, batch_shape: tuple[int, ...]) -> SparseCodes:
        indices = [np.asarray(row.indices, dtype=np.int64) for row in latents.rows]
        values = [np.asarray(row.values, dtype=np.float32) for row in latents.rows]
        for number, (row_indices, row_values) in enumerate(zip(indices, values, strict=True)):
            if row_indices.shape != row_values.shape or np.any(row_indices >= latents.d_sae):
                raise MalformedResponseError(f"sparse row {number} has mismatched or out-of-range indices")
        return cls(latents.d_sae, batch_shape, indices, values)

    def to_proto(self) -> common_pb2.SparseLatents:
        rows = [
            common_pb2.SparseRow(indices=row_indices.tolist(), values=row_values.tolist())
            for row_indices, row_values in zip(self.indices, self.values, strict=True)
        ]
        return common_pb2.SparseLatents(d_sae=self.d_sae, rows=rows)

    def to_dense(self) -> npt.NDArray[np.float32]:
        """Shape ``(*batch_shape, d_sae)`` with zeros where no latent fired."""
        dense = np.zeros((len(self.indices), self.d_sae), dtype=np.float32)
        for row, (row_indices, row_values) in enumerate(zip(self.indices, self.values, strict=True)):
            dense[row, row_indices] = row_values
        return dense.reshape(*self.batch_shape, self.d_sae)


@dataclass(frozen=True)
class Reconstruction:
    """An SAE's reconstruction of its inputs, ``(n_rows, d_in)``, and how far off it is.

    ``nmse`` is sum ||x - x_hat||^2 / sum ||x||^2; ``row_nmse`` the same per row.
    """

    sae_id: str
    reconstruction: FloatArray
    mse: float
    nmse: float
    explained_variance: float
    row_nmse: npt.NDArray[np.float32]
    codes: SparseCodes | None

    @classmethod
    def from_proto(cls, message: sae_pb2.ReconstructResponse) -> Reconstruction:
        batch_shape = tuple(message.batch_shape)
        codes = SparseCodes.from_proto(message.latents, batch_shape) if message.HasField("latents") else None
        error = message.error
        return cls(
            sae_id=message.sae_id,
            reconstruction=unpack_array(message.reconstruction),
            mse=error.mse,
            nmse=error.nmse,
            explained_variance=error.explained_variance,
            row_nmse=np.asarray(error.row_nmse, dtype=np.float32),
            codes=codes,
        )


@dataclass(frozen=True)
class LatentLabel:
    """A label of a latent and its semantic alignment (higher is better)."""

    text: str
    alignment: float

    @classmethod
    def from_proto(cls, message: common_pb2.LatentLabel) -> LatentLabel:
        return cls(message.text, message.alignment)


def _labels(messages: Iterable[common_pb2.LatentLabel]) -> list[LatentLabel]:
    return [LatentLabel.from_proto(label) for label in messages]


@dataclass(frozen=True)
class LatentAttribution:
    """One latent's activation on the image and its attribution to one text's score.

    ``patch_map`` (``(grid, grid)``) is set when patch maps were requested.
    """

    latent: int
    activation: float
    attribution: float
    labels: list[LatentLabel]
    patch_map: FloatArray | None

    @classmethod
    def from_proto(cls, message: attribution_pb2.LatentAttribution) -> LatentAttribution:
        return cls(
            latent=message.latent,
            activation=message.activation,
            attribution=message.attribution,
            labels=_labels(message.labels),
            patch_map=_optional_array(message, "patch_map"),
        )


@dataclass(frozen=True)
class TextAttribution:
    """The score cos(image, text), its top latents, and the part carried by the SAE's error term."""

    text: str
    score: float
    latents: list[LatentAttribution]
    error_attribution: float
    error_share: float

    @classmethod
    def from_proto(cls, message: attribution_pb2.TextAttribution) -> TextAttribution:
        return cls(
            text=message.text,
            score=message.score,
            latents=[LatentAttribution.from_proto(latent) for latent in message.latents],
            error_attribution=message.error_attribution,
            error_share=message.error_share,
        )


@dataclass(frozen=True)
class LayerContribution:
    """Direct effects of one residual block: attention (and per head, ``heads``) and MLP."""

    layer: int
    attention: float
    mlp: float
    heads: npt.NDArray[np.float32]

    @classmethod
    def from_proto(cls, message: attribution_pb2.LayerContribution) -> LayerContribution:
        return cls(message.layer, message.attention, message.mlp, np.asarray(message.heads, dtype=np.float32))


@dataclass(frozen=True)
class Decomposition:
    """The score split into the embedding term and per-layer terms, plus a ``(grid, grid)`` patch heatmap."""

    model_id: str
    score: float
    embedding_contribution: float
    layers: list[LayerContribution]
    patch_heatmap: FloatArray | None

    @classmethod
    def from_proto(cls, message: attribution_pb2.DecomposeResponse) -> Decomposition:
        return cls(
            model_id=message.model_id,
            score=message.score,
            embedding_contribution=message.embedding_contribution,
            layers=[LayerContribution.from_proto(layer) for layer in message.layers],
            patch_heatmap=_optional_array(message, "patch_heatmap"),
        )


@dataclass(frozen=True)
class ClassProbability:
    """Zero-shot probability of one class before and after steering."""

    class_name: str
    before: float
    after: float


@dataclass(frozen=True)
class Steering:
    """Image embeddings (``(d_embed,)``, not normalised) without and with the edits, and class probabilities."""

    sae_id: str
    original_embedding: FloatArray
    steered_embedding: FloatArray
    classes: list[ClassProbability]

    @classmethod
    def from_proto(cls, message: attribution_pb2.SteerResponse) -> Steering:
        return cls(
            sae_id=message.sae_id,
            original_embedding=unpack_array(message.original_embedding),
            steered_embedding=unpack_array(message.steered_embedding),
            classes=[ClassProbability(c.class_name, c.before, c.after) for c in message.classes],
        )


class HeadText(NamedTuple):
    """One description picked for a head, and the fraction of the head's variance, in [0, 1], that its
    direction removes after the earlier picks."""

    text: str
    variance_explained: float


@dataclass(frozen=True)
class HeadDescription:
    """TextSpan's description of one attention head: its ``descriptions`` in pick order (fewer than asked
    when no variance is left), the fraction of its variance they explain together, and ``variance``,
    the head's variance over the images (squared embedding units; compares heads of one model)."""

    layer: int
    head: int
    descriptions: list[HeadText]
    variance_explained: float
    variance: float

    @classmethod
    def from_proto(cls, message: attribution_pb2.HeadDescription) -> HeadDescription:
        descriptions = [HeadText(d.text, d.variance_explained) for d in message.descriptions]
        return cls(message.layer, message.head, descriptions, message.variance_explained, message.variance)


@dataclass(frozen=True)
class HeadDescriptions:
    """Every head of the requested layers, by layer then head, described over ``n_images`` images.

    ``cached``: read from the server's store (computed earlier); ``False`` when this call computed it.
    """

    model_id: str
    n_images: int
    heads: list[HeadDescription]
    cached: bool

    @classmethod
    def from_proto(cls, message: attribution_pb2.DescribeHeadsResponse) -> HeadDescriptions:
        heads = [HeadDescription.from_proto(head) for head in message.heads]
        return cls(message.model_id, message.n_images, heads, message.cached)


@dataclass(frozen=True)
class RankedHead:
    """Zero-shot accuracy with one head mean-ablated, and ``accuracy_drop``: the unablated accuracy
    minus it (negative when ablating the head helps)."""

    layer: int
    head: int
    accuracy: float
    accuracy_drop: float


@dataclass(frozen=True)
class HeadRanking:
    """Heads by the zero-shot accuracy lost when each alone is mean-ablated, largest drop first.

    ``accuracy`` is the unablated top-1 accuracy on ``n_images`` images over ``class_names`` (in
    class-index order); ``cached`` as in :class:`HeadDescriptions`.
    """

    model_id: str
    n_images: int
    accuracy: float
    class_names: list[str]
    heads: list[RankedHead]
    cached: bool

    @classmethod
    def from_proto(cls, message: attribution_pb2.RankHeadsResponse) -> HeadRanking:
        heads = [RankedHead(h.layer, h.head, h.accuracy, h.accuracy_drop) for h in message.heads]
        names = list(message.class_names)
        return cls(message.model_id, message.n_images, message.accuracy, names, heads, message.cached)


@dataclass(frozen=True)
class ActivatingInput:
    """A data-set input on which a latent fires; ``patch`` is the strongest patch for patch-site SAEs."""

    input_id: str
    activation: float
    label: str
    patch: int | None


@dataclass(frozen=True)
class TopActivations:
    """A latent's top activating inputs, largest first; ``source`` is ``"redis"`` or ``"store"``."""

    sae_id: str
    latent: int
    inputs: list[ActivatingInput]
    source: str
    degraded: bool

    @classmethod
    def from_proto(cls, message: features_pb2.TopActivationsResponse) -> TopActivations:
        inputs = [
            ActivatingInput(
                item.input_id, item.activation, item.label, item.patch if item.HasField("patch") else None
            )
            for item in message.inputs
        ]
        return cls(message.sae_id, message.latent, inputs, _source(message.source), message.degraded)


@dataclass(frozen=True)
class LatentNeighbour:
    """Another latent of the same SAE and the cosine of its decoder direction with the asked latent's."""

    latent: int
    cosine: float


@dataclass(frozen=True)
class LatentInfo:
    """Labels and statistics of one latent; ``bin_edges`` has one entry more than ``counts``.

    ``neighbours`` are the SAE's other latents nearest by decoder cosine, best first.
    """

    sae_id: str
    latent: int
    labels: list[LatentLabel]
    alignment: float
    clarity: float
    firing_rate: float
    bin_edges: npt.NDArray[np.float32]
    counts: npt.NDArray[np.int64]
    source: str
    degraded: bool
    label_counts: dict[str, int]
    neighbours: list[LatentNeighbour]

    @classmethod
    def from_proto(cls, message: features_pb2.LatentInfoResponse) -> LatentInfo:
        edges = np.asarray(message.histogram.bin_edges, dtype=np.float32)
        counts = np.asarray(message.histogram.counts, dtype=np.int64)
        if counts.size and edges.size != counts.size + 1:
            raise MalformedResponseError(f"histogram has {edges.size} edges for {counts.size} bins")
        return cls(
            sae_id=message.sae_id,
            latent=message.latent,
            labels=_labels(message.labels),
            alignment=message.alignment,
            clarity=message.clarity,
            firing_rate=message.firing_rate,
            bin_edges=edges,
            counts=counts,
            source=_source(message.source),
            degraded=message.degraded,
            label_counts=dict(message.label_counts),
            neighbours=[LatentNeighbour(n.latent, n.cosine) for n in message.neighbours],
        )


@dataclass(frozen=True)
class LatentMatch:
    """A latent aligned with a search text."""

    latent: int
    alignment: float
    labels: list[LatentLabel]


@dataclass(frozen=True)
class LatentSearch:
    """Latents by alignment with a text, best first; ``source`` is ``"redis"`` or ``"store"``."""

    sae_id: str
    matches: list[LatentMatch]
    source: str
    degraded: bool

    @classmethod
    def from_proto(cls, message: features_pb2.SearchLatentsResponse) -> LatentSearch:
        matches = [LatentMatch(m.latent, m.alignment, _labels(m.labels)) for m in message.matches]
        return cls(message.sae_id, matches, _source(message.source), message.degraded)


@dataclass(frozen=True)
class ModelInfo:
    """A registered CLIP model."""

    id: str
    arch: str
    description: str
    embed_dim: int
    image_size: int
    n_layers: int
    patch_grid: int

    @classmethod
    def from_proto(cls, message: models_pb2.ModelInfo) -> ModelInfo:
        return cls(
            id=message.id,
            arch=message.arch,
            description=message.description,
            embed_dim=message.embed_dim,
            image_size=message.image_size,
            n_layers=message.n_layers,
            patch_grid=message.patch_grid,
        )


@dataclass(frozen=True)
class SaeInfo:
    """A registered SAE: its model, site, architecture, sizes, training metrics and hyperparameters."""

    id: str
    model_id: str
    site: str
    arch: str
    d_in: int
    d_sae: int
    dataset_id: str
    metrics: dict[str, float]
    has_feature_index: bool
    hyperparameters: dict[str, float]

    @classmethod
    def from_proto(cls, message: models_pb2.SaeInfo) -> SaeInfo:
        return cls(
            id=message.id,
            model_id=message.model_id,
            site=message.site,
            arch=message.arch,
            d_in=message.d_in,
            d_sae=message.d_sae,
            dataset_id=message.dataset_id,
            metrics=dict(message.metrics),
            has_feature_index=message.has_feature_index,
            hyperparameters=dict(message.hyperparameters),
        )


def codes_from_encode(message: sae_pb2.EncodeResponse) -> SparseCodes:
    return SparseCodes.from_proto(message.latents, tuple(message.batch_shape))


def activations_from_decode(message: sae_pb2.DecodeResponse) -> FloatArray:
    return unpack_array(message.activations)


def attributions_from_proto(message: attribution_pb2.AttributeLatentsResponse) -> list[TextAttribution]:
    return [TextAttribution.from_proto(text) for text in message.texts]


def models_from_proto(message: models_pb2.ListModelsResponse) -> list[ModelInfo]:
    return [ModelInfo.from_proto(model) for model in message.models]


def saes_from_proto(message: models_pb2.ListSaesResponse) -> list[SaeInfo]:
    return [SaeInfo.from_proto(sae) for sae in message.saes]
