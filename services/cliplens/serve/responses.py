"""Building response messages from the results of deployments and lookups."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cliplens.serve.actor_types import (
    AttributionResult,
    CachedHeads,
    DecompositionResult,
    Floats,
    HeadDescriptions,
    HeadRanking,
    Label,
    LatentMatchResult,
    ModelFacts,
    Neighbour,
    SparseRows,
    SteeringResult,
)
from cliplens.serve.catalog import ServedSae
from cliplens.store import LatentStats, TopKEntry
from cliplens_client.arrays import FloatDType, pack_array
from cliplens_client.v1 import attribution_pb2, common_pb2, features_pb2, models_pb2, sae_pb2

WIRE_DTYPES: dict[int, FloatDType] = {
    common_pb2.DTYPE_UNSPECIFIED: "float32",
    common_pb2.DTYPE_FLOAT32: "float32",
    common_pb2.DTYPE_FLOAT16: "float16",
}


def embeddings(values: Floats, normalize: bool, dtype: int) -> common_pb2.FloatArray:
    if normalize:
        values = values / np.maximum(np.linalg.norm(values, axis=-1, keepdims=True), 1e-12)
    return pack_array(values, WIRE_DTYPES[dtype])


def sparse_latents(rows: SparseRows) -> common_pb2.SparseLatents:
    return common_pb2.SparseLatents(
        d_sae=rows.d_sae,
        rows=[
            common_pb2.SparseRow(indices=indices.tolist(), values=values.tolist())
            for indices, values in zip(rows.indices, rows.values, strict=True)
        ],
    )


def labels(values: Sequence[Label]) -> list[common_pb2.LatentLabel]:
    return [common_pb2.LatentLabel(text=text, alignment=alignment) for text, alignment in values]


def attribution(sae_id: str, result: AttributionResult) -> attribution_pb2.AttributeLatentsResponse:
    return attribution_pb2.AttributeLatentsResponse(
        sae_id=sae_id,
        patch_grid=result.patch_grid,
        texts=[
            attribution_pb2.TextAttribution(
                text=text.text,
                score=text.score,
                error_attribution=text.error_attribution,
                error_share=text.error_share,
                latents=[
                    attribution_pb2.LatentAttribution(
                        latent=share.latent,
                        activation=share.activation,
                        attribution=share.attribution,
                        labels=labels(share.labels),
                        patch_map=pack_array(share.patch_map) if share.patch_map is not None else None,
                    )
                    for share in text.latents
                ],
            )
            for text in result.texts
        ],
    )


def decomposition(model_id: str, result: DecompositionResult) -> attribution_pb2.DecomposeResponse:
    return attribution_pb2.DecomposeResponse(
        model_id=model_id,
        score=result.score,
        embedding_contribution=result.embedding,
        layers=[
            attribution_pb2.LayerContribution(
                layer=i, attention=layer.attention, mlp=layer.mlp, heads=layer.heads
            )
            for i, layer in enumerate(result.layers)
        ],
        patch_heatmap=pack_array(result.patch_heatmap),
    )


def steering(
    sae_id: str, class_names: Sequence[str], result: SteeringResult
) -> attribution_pb2.SteerResponse:
    return attribution_pb2.SteerResponse(
        sae_id=sae_id,
        original_embedding=pack_array(result.original),
        steered_embedding=pack_array(result.steered),
        classes=[
            attribution_pb2.ClassProbability(class_name=name, before=before, after=after)
            for name, before, after in zip(class_names, result.before, result.after, strict=True)
        ],
    )


def source(from_redis: bool) -> features_pb2.FeatureSource:
    return features_pb2.FEATURE_SOURCE_REDIS if from_redis else features_pb2.FEATURE_SOURCE_STORE


def top_activations(
    sae_id: str, latent: int, entries: Sequence[TopKEntry], from_redis: bool
) -> features_pb2.TopActivationsResponse:
    return features_pb2.TopActivationsResponse(
        sae_id=sae_id,
        latent=latent,
        inputs=[
            features_pb2.ActivatingInput(input_id=e.key, activation=e.activation, label=e.label or "")
            for e in entries
        ],
        source=source(from_redis),
        degraded=not from_redis,
    )


def latent_info(
    sae_id: str,
    latent: int,
    labels_: Sequence[Label],
    neighbours: Sequence[Neighbour],
    stats: LatentStats,
    from_redis: bool,
) -> features_pb2.LatentInfoResponse:
    return features_pb2.LatentInfoResponse(
        sae_id=sae_id,
        latent=latent,
        labels=labels(labels_),
        alignment=labels_[0][1] if labels_ else 0.0,
        firing_rate=stats.fires / stats.rows if stats.rows else 0.0,
        histogram=histogram(stats),
        source=source(from_redis),
        degraded=not from_redis,
        label_counts=stats.label_counts,
        neighbours=[features_pb2.LatentNeighbour(latent=k, cosine=cosine) for k, cosine in neighbours],
    )


def search_latents(sae_id: str, matches: Sequence[LatentMatchResult]) -> features_pb2.SearchLatentsResponse:
    return features_pb2.SearchLatentsResponse(
        sae_id=sae_id,
        matches=[
            features_pb2.LatentMatch(latent=m.latent, alignment=m.alignment, labels=labels(m.labels))
            for m in matches
        ],
        source=features_pb2.FEATURE_SOURCE_STORE,
    )


def histogram(stats: LatentStats) -> features_pb2.Histogram:
    return features_pb2.Histogram(bin_edges=stats.histogram_edges, counts=stats.histogram_counts)


def model_info(facts: ModelFacts) -> models_pb2.ModelInfo:
    return models_pb2.ModelInfo(
        id=facts.model_id,
        arch=facts.arch,
        description=facts.description,
        embed_dim=facts.embed_dim,
        image_size=facts.image_size,
        n_layers=facts.n_layers,
        patch_grid=facts.patch_grid,
    )


def sae_info(served: ServedSae) -> models_pb2.SaeInfo:
    cfg = served.record.cfg
    return models_pb2.SaeInfo(
        id=served.record.sae_id,
        model_id=cfg.model_id,
        site=cfg.site,
        arch=cfg.arch,
        d_in=cfg.d_in,
        d_sae=cfg.d_sae,
        dataset_id=cfg.dataset_id,
        metrics=served.record.metrics,
        has_feature_index=served.has_feature_index,
        hyperparameters=cfg.hyperparameters(),
    )


def reconstruction_error(x: Floats, x_hat: Floats) -> sae_pb2.ReconstructionError:
    x64, err = x.astype(np.float64), (x - x_hat).astype(np.float64)
    row_sse, row_ss = (err**2).sum(-1), (x64**2).sum(-1)
    sst = ((x64 - x64.mean(0)) ** 2).sum()
    return sae_pb2.ReconstructionError(
        mse=float((err**2).mean()),
        nmse=float(row_sse.sum() / max(row_ss.sum(), 1e-30)),
        explained_variance=float(1 - row_sse.sum() / sst) if x.shape[0] > 1 and sst > 0 else float("nan"),
        row_nmse=(row_sse / np.maximum(row_ss, 1e-30)).tolist(),
    )


def head_descriptions(answer: CachedHeads[HeadDescriptions]) -> attribution_pb2.DescribeHeadsResponse:
    result = answer.result
    return attribution_pb2.DescribeHeadsResponse(
        model_id=result.model_id,
        n_images=result.n_images,
        heads=[
            attribution_pb2.HeadDescription(
                layer=head.layer,
                head=head.head,
                descriptions=[
                    attribution_pb2.HeadText(text=pick.text, variance_explained=pick.variance_explained)
                    for pick in head.descriptions
                ],
                variance_explained=head.variance_explained,
                variance=head.variance,
            )
            for head in result.heads
        ],
        cached=answer.cached,
    )


def head_ranking(answer: CachedHeads[HeadRanking], top_n: int) -> attribution_pb2.RankHeadsResponse:
    result = answer.result
    return attribution_pb2.RankHeadsResponse(
        model_id=result.model_id,
        n_images=result.n_images,
        accuracy=result.accuracy,
        heads=[
            attribution_pb2.RankedHead(
                layer=head.layer, head=head.head, accuracy=head.accuracy, accuracy_drop=head.accuracy_drop
            )
            for head in result.top(top_n)
        ],
        cached=answer.cached,
        class_names=result.class_names,
    )
