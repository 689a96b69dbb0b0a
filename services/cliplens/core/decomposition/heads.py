"""Every attention head of the image tower described by TextSpan and ranked by mean ablation.

:func:`describe_heads` runs TextSpan (:mod:`~cliplens.core.decomposition.textspan`) on each head's
direct contributions; :func:`rank_heads` mean-ablates each head alone and ranks the heads by the
zero-shot accuracy lost (:mod:`~cliplens.core.decomposition.ablation`). Both decompose the images
once for all heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from cliplens.core.decomposition.ablation import (
    HeadAblationResult,
    mean_decomposition,
    rank_heads_by_ablation,
)
from cliplens.core.decomposition.textspan import (
    TextSpanPick,
    all_head_contributions,
    embed_descriptions,
    load_descriptions,
    text_span,
)
from cliplens.core.errors import InvalidInputError, ShapeMismatchError, SiteError
from cliplens.core.models import LoadedClip
from cliplens.core.prompts import PHOTO_TEMPLATES
from cliplens.core.zeroshot import text_classifier

DEFAULT_PER_HEAD = 5
MAX_PER_HEAD = 20
MAX_POOL_SIZE = 10_000
# TextSpan's projection rank (the paper's r).
DEFAULT_RANK = 80


@dataclass(frozen=True)
class HeadDescription:
    """One head's TextSpan picks, in pick order, and the variance of its direct contributions.

    ``variance`` is the trace of the covariance over images of the head's contributions to the
    (unnormalised) image embedding; it compares heads of one model.
    """

    layer: int
    head: int
    descriptions: tuple[TextSpanPick, ...]
    variance: float

    @property
    def variance_explained(self) -> float:
        """The fraction of the head's variance that all its descriptions explain together."""
        return sum(pick.variance_explained for pick in self.descriptions)


@dataclass(frozen=True)
class HeadDescriptions:
    """TextSpan descriptions of heads (ordered by layer, then head) over ``n_images`` images."""

    model_id: str
    n_images: int
    per_head: int
    heads: tuple[HeadDescription, ...]

    def by_variance(self) -> list[HeadDescription]:
        """The heads by the variance of their contributions, largest first."""
        return sorted(self.heads, key=lambda h: (-h.variance, h.layer, h.head))


@dataclass(frozen=True)
class HeadRanking:
    """Zero-shot accuracy over ``n_images`` labelled images, and every head by the accuracy lost
    when it alone is mean-ablated (largest drop first)."""

    model_id: str
    n_images: int
    class_names: tuple[str, ...]
    accuracy: float
    heads: tuple[HeadAblationResult, ...]

    def top(self, n: int) -> tuple[HeadAblationResult, ...]:
        return self.heads[:n]


@torch.no_grad()
def describe_heads(
    clip: LoadedClip,
    images: Float[Tensor, "n 3 height width"],
    pool: Sequence[str] | None = None,
    per_head: int = DEFAULT_PER_HEAD,
    layers: Sequence[int] | None = None,
    *,
    rank: int = DEFAULT_RANK,
    batch_size: int = 64,
) -> HeadDescriptions:
    """TextSpan of every head of ``layers`` (default: all) with ``per_head`` texts from ``pool``.

    ``pool`` defaults to the shipped descriptions (:data:`DESCRIPTIONS_FILE`). The pool is embedded
    once and the images are decomposed once for all heads.
    """
    texts = load_descriptions() if pool is None else check_pool_size(pool)
    check_per_head(per_head, len(texts))
    embeddings = embed_descriptions(clip, texts)
    chosen = resolve_layers(clip, layers)
    if images.shape[0] < 2:
        raise InvalidInputError(f"describing heads needs at least 2 images, got {images.shape[0]}")
    contributions = all_head_contributions(clip, images, chosen, batch_size)
    heads = []
    for i, layer in enumerate(chosen):
        for head in range(contributions.shape[2]):
            data = contributions[:, i, head]
            span = text_span(data, embeddings, texts, n_picks=per_head, rank=rank)
            variance = float((data.double() - data.double().mean(0)).pow(2).sum(1).mean())
            heads.append(HeadDescription(layer, head, tuple(span.picks), variance))
    return HeadDescriptions(clip.spec.id, int(images.shape[0]), per_head, tuple(heads))


def check_pool_size(pool: Sequence[str]) -> list[str]:
    """The pool as a list; raises :class:`InvalidInputError` when it is empty or over :data:`MAX_POOL_SIZE`."""
    if not 1 <= len(pool) <= MAX_POOL_SIZE:
        raise InvalidInputError(
            f"the description pool must hold 1 to {MAX_POOL_SIZE:,} texts, got {len(pool):,}"
        )
    return list(pool)


def check_per_head(per_head: int, pool_size: int) -> None:
    """Raise :class:`InvalidInputError` unless ``1 <= per_head <= min(MAX_PER_HEAD, pool_size)``."""
    if not 1 <= per_head <= min(MAX_PER_HEAD, pool_size):
        raise InvalidInputError(
            f"per_head must be between 1 and {MAX_PER_HEAD} and at most the pool size {pool_size}, got {per_head}"
        )


def resolve_layers(clip: LoadedClip, layers: Sequence[int] | None = None) -> tuple[int, ...]:
    """``layers`` sorted without repeats (all of the image tower's layers when empty or ``None``).

    Raises :class:`InvalidInputError` naming a layer the tower does not have.
    """
    blocks = getattr(getattr(clip.model.visual, "transformer", None), "resblocks", None)
    if blocks is None:
        raise SiteError(
            f"model '{clip.spec.id}' has no transformer image tower ({type(clip.model.visual).__name__})"
        )
    n_layers = len(blocks)
    for layer in layers or ():
        if not 0 <= layer < n_layers:
            raise InvalidInputError(f"layer {layer} is out of range: the model has layers 0..{n_layers - 1}")
    return tuple(sorted(set(layers))) if layers else tuple(range(n_layers))


@torch.no_grad()
def rank_heads(
    clip: LoadedClip,
    images: Float[Tensor, "n 3 height width"],
    labels: Int[Tensor, " n"],
    class_names: Sequence[str],
    *,
    templates: Sequence[str] = PHOTO_TEMPLATES,
    batch_size: int = 64,
) -> HeadRanking:
    """Zero-shot accuracy on the labelled images and every head ranked by the accuracy it loses alone.

    ``labels[i]`` indexes ``class_names``; each head is replaced by its mean over the same images.
    """
    names = tuple(class_names)
    if len(names) < 2:
        raise InvalidInputError(f"ranking heads needs at least 2 class names, got {len(names)}")
    if images.shape[0] != labels.shape[0]:
        raise ShapeMismatchError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < len(names):
        raise InvalidInputError(
            f"labels must be class indices in 0..{len(names) - 1}, got {int(labels.min())}..{int(labels.max())}"
        )
    classifier = text_classifier(clip, names, templates)
    means = mean_decomposition(clip, images, batch_size)
    ranked = rank_heads_by_ablation(clip, images, labels, classifier, means, batch_size)
    n = int(images.shape[0])
    # Every entry's accuracy + drop is the plain accuracy; rounding to whole images makes it exact.
    accuracy = round((ranked[0].accuracy + ranked[0].accuracy_drop) * n) / n
    return HeadRanking(clip.spec.id, n, names, accuracy, tuple(ranked))
