"""Every head described by TextSpan and ranked by mean ablation, checked against brute force on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cliplens.core.decomposition import (
    MAX_PER_HEAD,
    decompose,
    describe_heads,
    rank_heads,
    resolve_layers,
)
from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.models import LoadedClip
from cliplens.core.zeroshot import text_classifier

POOL = [
    "a red object",
    "a blue sky",
    "an animal",
    "a vehicle",
    "a green field",
    "a dark image",
    "a striped pattern",
    "two people",
    "a wooden table",
    "a photo at night",
]
CLASSES = ["cat", "dog", "ship", "truck"]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def labels() -> torch.Tensor:
    return torch.randint(len(CLASSES), (24,), generator=torch.Generator().manual_seed(4))


def _brute_text_span(contributions: np.ndarray, texts: np.ndarray, n_picks: int, rank: int = 80):
    """TextSpan written out in numpy: project, centre, pick the max-variance text, remove, repeat.

    The projection keeps the top ``rank`` singular directions that are not rounding noise: a tiny
    head's contributions span 17 directions (its 16-wide value space plus the LayerNorm offset).
    """
    _, singular, vh = np.linalg.svd(contributions, full_matrices=False)
    basis = vh[:rank][singular[:rank] > 1e-5 * singular[0]]
    assert len(basis) == 17
    candidates = (texts / np.linalg.norm(texts, axis=1, keepdims=True)) @ basis.T @ basis
    data = contributions - contributions.mean(0)
    total = (data**2).sum()
    picks = []
    for _ in range(n_picks):
        best = int(np.argmax((data @ candidates.T).var(0)))
        direction = candidates[best] / np.linalg.norm(candidates[best])
        removed = np.outer(data @ direction, direction)
        picks.append((best, (removed**2).sum() / total))
        data = data - removed
        candidates = candidates - np.outer(candidates @ direction, direction)
    return picks


def test_describe_heads_matches_brute_force(tiny_clip: LoadedClip, images: torch.Tensor) -> None:
    result = describe_heads(tiny_clip, images, POOL, per_head=4)
    assert result.model_id == tiny_clip.spec.id and result.n_images == 24 and result.per_head == 4
    assert [(h.layer, h.head) for h in result.heads] == [
        (layer, head) for layer in range(2) for head in range(4)
    ]
    # The head's contributions from the per-token decomposition, and each text embedded on its own.
    layer, head = 1, 2
    terms = decompose(tiny_clip.model, images).attention[:, layer, head].sum(1).double().numpy()
    texts = torch.cat([tiny_clip.encode_texts([text]) for text in POOL]).double().numpy()
    expected = _brute_text_span(terms, texts, n_picks=4)
    described = result.heads[layer * 4 + head]
    assert (described.layer, described.head) == (layer, head)
    assert [p.index for p in described.descriptions] == [index for index, _ in expected]
    assert [p.text for p in described.descriptions] == [POOL[index] for index, _ in expected]
    np.testing.assert_allclose(
        [p.variance_explained for p in described.descriptions], [share for _, share in expected], rtol=1e-4
    )
    assert described.variance_explained == pytest.approx(sum(share for _, share in expected), rel=1e-4)
    assert described.variance == pytest.approx(((terms - terms.mean(0)) ** 2).sum(1).mean(), rel=1e-4)
    assert result.by_variance()[0].variance == max(h.variance for h in result.heads)


def test_describe_heads_is_deterministic_and_layers_select(
    tiny_clip: LoadedClip, images: torch.Tensor
) -> None:
    everything = describe_heads(tiny_clip, images, POOL, per_head=3, batch_size=7)
    assert describe_heads(tiny_clip, images, POOL, per_head=3, batch_size=7) == everything
    # Other batch sizes round differently: the same picks, the same shares to rounding.
    rebatched = describe_heads(tiny_clip, images, POOL, per_head=3, batch_size=24)
    one_layer = describe_heads(tiny_clip, images, POOL, per_head=3, layers=[1, 1], batch_size=7)
    assert one_layer.heads == everything.heads[4:]
    for mine, other in zip(everything.heads, rebatched.heads, strict=True):
        assert [p.index for p in mine.descriptions] == [p.index for p in other.descriptions]
        np.testing.assert_allclose(
            [p.variance_explained for p in mine.descriptions],
            [p.variance_explained for p in other.descriptions],
            rtol=1e-4,
        )
    assert resolve_layers(tiny_clip, [1, 0, 1]) == (0, 1) and resolve_layers(tiny_clip, []) == (0, 1)


def test_rank_heads_matches_brute_force(
    tiny_clip: LoadedClip, images: torch.Tensor, labels: torch.Tensor
) -> None:
    ranking = rank_heads(tiny_clip, images, labels, CLASSES, batch_size=10)
    classifier = text_classifier(tiny_clip, CLASSES)
    embeddings = tiny_clip.model.encode_image(images).float()
    heads = decompose(tiny_clip.model, images).attention.sum(3)  # (n, layers, heads, d)

    def accuracy(embedding: torch.Tensor) -> float:
        return int(((F.normalize(embedding, dim=-1) @ classifier.T).argmax(-1) == labels).sum()) / len(labels)

    assert ranking.accuracy == pytest.approx(accuracy(embeddings), abs=1e-9)
    assert ranking.n_images == 24 and ranking.class_names == tuple(CLASSES)
    assert len(ranking.heads) == 8
    for result in ranking.heads:
        term = heads[:, result.layer, result.head]
        ablated = accuracy(embeddings - term + term.mean(0))
        assert result.accuracy == pytest.approx(ablated, abs=1e-9), (result.layer, result.head)
        assert result.accuracy_drop == pytest.approx(ranking.accuracy - ablated, abs=1e-9)
    drops = [(-r.accuracy_drop, r.layer, r.head) for r in ranking.heads]
    assert drops == sorted(drops)
    assert ranking.top(3) == ranking.heads[:3]
    assert rank_heads(tiny_clip, images, labels, CLASSES, batch_size=24) == ranking


def test_bad_inputs_name_the_problem(
    tiny_clip: LoadedClip, images: torch.Tensor, labels: torch.Tensor
) -> None:
    with pytest.raises(InvalidInputError, match="layer 5 is out of range: the model has layers 0..1"):
        describe_heads(tiny_clip, images, POOL, layers=[0, 5])
    with pytest.raises(InvalidInputError, match="pool must hold 1 to 10,000 texts, got 0"):
        describe_heads(tiny_clip, images, [])
    with pytest.raises(InvalidInputError, match="empty or non-string"):
        describe_heads(tiny_clip, images, ["a dog", "  "], per_head=1)
    with pytest.raises(InvalidInputError, match="per_head must be between 1 and 20 .* got 0"):
        describe_heads(tiny_clip, images, POOL, per_head=0)
    with pytest.raises(InvalidInputError, match="at most the pool size 10, got 11"):
        describe_heads(tiny_clip, images, POOL, per_head=11)
    with pytest.raises(InvalidInputError, match=f"per_head must be between 1 and {MAX_PER_HEAD}"):
        describe_heads(tiny_clip, images, [f"text {i}" for i in range(30)], per_head=MAX_PER_HEAD + 1)
    with pytest.raises(InvalidInputError, match="at least 2 images, got 1"):
        describe_heads(tiny_clip, images[:1], POOL)
    with pytest.raises(ShapeMismatchError, match="24 images but 23 labels"):
        rank_heads(tiny_clip, images, labels[:-1], CLASSES)
    with pytest.raises(InvalidInputError, match=r"class indices in 0\.\.3, got 0\.\.4"):
        rank_heads(tiny_clip, images, torch.arange(24) % 5, CLASSES)
    with pytest.raises(InvalidInputError, match="at least 2 class names, got 1"):
        rank_heads(tiny_clip, images, labels * 0, ["cat"])
