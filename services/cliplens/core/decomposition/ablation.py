"""Mean ablation of heads and layers: replace their direct contributions by a dataset mean and re-sum."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from cliplens.core.decomposition.decompose import PER_HEAD, Decomposition, decompose, image_batches
from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.models import LoadedClip


@dataclass(frozen=True)
class Ablation:
    """What to mean-ablate: single heads as ``(layer, head)`` pairs, whole attention layers, MLP layers."""

    heads: tuple[tuple[int, int], ...] = ()
    attention_layers: tuple[int, ...] = ()
    mlp_layers: tuple[int, ...] = ()

    @classmethod
    def all_layers(cls, n_layers: int) -> Ablation:
        """Every attention and MLP layer (only the input-independent embedding term stays)."""
        layers = tuple(range(n_layers))
        return cls(attention_layers=layers, mlp_layers=layers)

    def check(self, decomposition: Decomposition) -> None:
        """Raise :class:`InvalidInputError` for any layer or head the model does not have."""
        for layer, head in self.heads:
            decomposition.check_head(layer, head)
        for layer in (*self.attention_layers, *self.mlp_layers):
            decomposition.check_layer(layer)


@dataclass(frozen=True)
class HeadAblationResult:
    """Zero-shot accuracy with one head mean-ablated, and the accuracy it lost."""

    layer: int
    head: int
    accuracy: float
    accuracy_drop: float


def mean_decomposition(
    clip: LoadedClip, images: Float[Tensor, "n 3 height width"], batch_size: int = 64
) -> Decomposition:
    """Per-head mean terms over ``images`` (batch axis of size 1, summed over source tokens)."""
    _check_not_empty(images)
    sums: dict[str, Tensor] = {}
    for batch in image_batches(images, batch_size, clip.device):
        part = decompose(clip.model, batch, sum_over=PER_HEAD)
        for name in ("embedding", "mlp", "attention", "norm"):
            sums[name] = getattr(part, name).sum(0, keepdim=True) + sums.get(name, 0.0)
    n = images.shape[0]
    return Decomposition(**{name: total / n for name, total in sums.items()}, summed=PER_HEAD)


def ablate(
    decomposition: Decomposition, means: Decomposition, ablation: Ablation
) -> Float[Tensor, "batch d_embed"]:
    """The image embeddings re-summed with the ablated terms replaced by their means."""
    ablation.check(decomposition)
    _check_means(decomposition, means)
    heads = decomposition.per_head()
    mean_heads = means.per_head()
    delta = torch.zeros_like(decomposition.embedding)
    for layer, head in set(ablation.heads):
        if layer not in ablation.attention_layers:
            delta += mean_heads[:, layer, head] - heads[:, layer, head]
    for layer in set(ablation.attention_layers):
        delta += mean_heads[:, layer].sum(1) - heads[:, layer].sum(1)
    for layer in set(ablation.mlp_layers):
        delta += means.mlp[:, layer] - decomposition.mlp[:, layer]
    return decomposition.total() + delta


@torch.no_grad()
def ablated_accuracy(
    clip: LoadedClip,
    images: Float[Tensor, "n 3 height width"],
    labels: Int[Tensor, " n"],
    classifier: Float[Tensor, "n_classes d_embed"],
    means: Decomposition,
    ablation: Ablation,
    batch_size: int = 64,
) -> float:
    """Zero-shot top-1 accuracy with ``ablation`` applied (``Ablation()`` gives the plain accuracy)."""
    _check_labels(images, labels)
    correct = 0
    for batch, batch_labels in zip(
        image_batches(images, batch_size, clip.device), labels.cpu().split(batch_size), strict=True
    ):
        embedding = ablate(decompose(clip.model, batch, sum_over=PER_HEAD), means, ablation)
        correct += int((_predict(embedding, classifier) == batch_labels).sum())
    return correct / images.shape[0]


@torch.no_grad()
def rank_heads_by_ablation(
    clip: LoadedClip,
    images: Float[Tensor, "n 3 height width"],
    labels: Int[Tensor, " n"],
    classifier: Float[Tensor, "n_classes d_embed"],
    means: Decomposition,
    batch_size: int = 64,
) -> list[HeadAblationResult]:
    """Every head mean-ablated on its own, sorted by the zero-shot accuracy lost (largest first)."""
    _check_labels(images, labels)
    baseline = 0
    correct = torch.zeros(())
    for batch, batch_labels in zip(
        image_batches(images, batch_size, clip.device), labels.cpu().split(batch_size), strict=True
    ):
        part = decompose(clip.model, batch, sum_over=PER_HEAD)
        _check_means(part, means)
        total = part.total()
        baseline += int((_predict(total, classifier) == batch_labels).sum())
        ablated = total[:, None, None] + means.per_head() - part.per_head()  # (batch, layers, heads, d)
        correct = correct + (_predict(ablated, classifier) == batch_labels[:, None, None]).sum(0)
    n = images.shape[0]
    results = [
        HeadAblationResult(
            layer, head, float(correct[layer, head]) / n, (baseline - float(correct[layer, head])) / n
        )
        for layer in range(correct.shape[0])
        for head in range(correct.shape[1])
    ]
    return sorted(results, key=lambda r: (-r.accuracy_drop, r.layer, r.head))


def _predict(
    embeddings: Float[Tensor, "*batch d_embed"], classifier: Float[Tensor, "n_classes d_embed"]
) -> Int[Tensor, "*batch"]:
    return (F.normalize(embeddings, dim=-1) @ classifier.float().T.to(embeddings)).argmax(-1).cpu()


def _check_means(decomposition: Decomposition, means: Decomposition) -> None:
    if means.per_head().shape[1:] != decomposition.per_head().shape[1:]:
        raise ShapeMismatchError(
            f"mean terms of shape (layers, heads, d_embed) = {tuple(means.per_head().shape[1:])} do not fit "
            f"this model's {tuple(decomposition.per_head().shape[1:])}"
        )


def _check_not_empty(images: Tensor) -> None:
    if images.shape[0] == 0:
        raise InvalidInputError("images must not be empty")


def _check_labels(images: Tensor, labels: Tensor) -> None:
    _check_not_empty(images)
    if images.shape[0] != labels.shape[0]:
        raise ShapeMismatchError(f"{images.shape[0]} images but {labels.shape[0]} labels")
