"""Mean ablation of heads and layers against zero-shot accuracy on the shipped CIFAR-10 sample."""

from __future__ import annotations

import pytest
import torch

from cliplens.core.decomposition import (
    PER_HEAD,
    Ablation,
    ablate,
    ablated_accuracy,
    decompose,
    mean_decomposition,
    rank_heads_by_ablation,
)
from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.models import LoadedClip
from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.core.zeroshot import text_classifier, zero_shot_accuracy
from cliplens.store.sample import load_labelled_parquet

N_IMAGES = 80


@pytest.fixture(scope="module")
def cifar(demo_clip: LoadedClip) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    data = load_labelled_parquet(limit=N_IMAGES)
    return demo_clip.preprocess_images(data.images), data.labels, text_classifier(demo_clip, CIFAR10_CLASSES)


@pytest.fixture(scope="module")
def means(demo_clip: LoadedClip, cifar: tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
    return mean_decomposition(demo_clip, cifar[0], batch_size=64)


def test_mean_terms_are_the_dataset_mean(demo_clip: LoadedClip, cifar, means) -> None:
    images = cifar[0][:10]
    small_means = mean_decomposition(demo_clip, images, batch_size=3)
    full = decompose(demo_clip.model, images, sum_over=PER_HEAD)
    assert small_means.attention.shape == (1, 4, 4, 1, 128)
    torch.testing.assert_close(small_means.per_head()[0], full.per_head().mean(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(small_means.mlp[0], full.mlp.mean(0), atol=1e-5, rtol=1e-4)


def test_ablating_nothing_changes_nothing(demo_clip: LoadedClip, cifar, means) -> None:
    images, labels, classifier = cifar
    decomposition = decompose(demo_clip.model, images[:8], sum_over=PER_HEAD)
    assert torch.equal(ablate(decomposition, means, Ablation()), decomposition.total())
    plain = zero_shot_accuracy(demo_clip, images, labels, classifier)
    assert ablated_accuracy(demo_clip, images, labels, classifier, means, Ablation()) == pytest.approx(
        plain, abs=1e-6
    )


def test_ablating_everything_collapses_accuracy(demo_clip: LoadedClip, cifar, means) -> None:
    images, labels, classifier = cifar
    plain = zero_shot_accuracy(demo_clip, images, labels, classifier)
    ablated = ablated_accuracy(demo_clip, images, labels, classifier, means, Ablation.all_layers(4))
    # Only the (input-independent) embedding term keeps its own value: the classifier is left guessing.
    assert ablated < plain - 0.1
    assert ablated <= 2 * float(torch.bincount(labels).max()) / len(labels)


def test_head_and_layer_ablations_agree(demo_clip: LoadedClip, cifar, means) -> None:
    decomposition = decompose(demo_clip.model, cifar[0][:8], sum_over=PER_HEAD)
    whole_layer = ablate(decomposition, means, Ablation(attention_layers=(2,)))
    every_head = ablate(decomposition, means, Ablation(heads=tuple((2, h) for h in range(4))))
    both = ablate(decomposition, means, Ablation(heads=((2, 1),), attention_layers=(2,)))
    torch.testing.assert_close(whole_layer, every_head, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(both, whole_layer)
    assert not torch.allclose(whole_layer, decomposition.total())


def test_rank_heads_matches_single_ablations(demo_clip: LoadedClip, cifar, means) -> None:
    images, labels, classifier = cifar
    ranking = rank_heads_by_ablation(demo_clip, images, labels, classifier, means, batch_size=50)
    assert len(ranking) == 16
    assert {(r.layer, r.head) for r in ranking} == {(layer, head) for layer in range(4) for head in range(4)}
    drops = [r.accuracy_drop for r in ranking]
    assert drops == sorted(drops, reverse=True)
    plain = zero_shot_accuracy(demo_clip, images, labels, classifier)
    for result in (ranking[0], ranking[-1]):
        single = ablated_accuracy(
            demo_clip, images, labels, classifier, means, Ablation(heads=((result.layer, result.head),))
        )
        assert result.accuracy == pytest.approx(single)
        assert result.accuracy_drop == pytest.approx(plain - single, abs=1e-6)


def test_bad_ablation_inputs_are_rejected(demo_clip: LoadedClip, tiny_clip: LoadedClip, cifar, means) -> None:
    images, labels, classifier = cifar
    decomposition = decompose(demo_clip.model, images[:2], sum_over=PER_HEAD)
    with pytest.raises(InvalidInputError, match="head 4 is out of range"):
        ablate(decomposition, means, Ablation(heads=((0, 4),)))
    with pytest.raises(InvalidInputError, match="layer 7 is out of range"):
        ablate(decomposition, means, Ablation(mlp_layers=(7,)))
    with pytest.raises(ShapeMismatchError, match="3 images but 2 labels"):
        ablated_accuracy(demo_clip, images[:3], labels[:2], classifier, means, Ablation())
    with pytest.raises(InvalidInputError, match="batch_size must be at least 1"):
        mean_decomposition(demo_clip, images[:2], batch_size=0)
    with pytest.raises(InvalidInputError, match="images must not be empty"):
        mean_decomposition(demo_clip, images[:0])
    tiny_means = mean_decomposition(tiny_clip, torch.randn(2, 3, 32, 32))
    with pytest.raises(ShapeMismatchError, match="do not fit"):
        ablate(decomposition, tiny_means, Ablation())
