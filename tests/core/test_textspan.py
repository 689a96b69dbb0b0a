"""TextSpan on a planted low-rank head, the shipped description pool, and a real head of the demo model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cliplens.core.decomposition import (
    DESCRIPTIONS_FILE,
    PER_HEAD,
    decompose,
    head_contributions,
    head_text_span,
    load_descriptions,
    text_span,
)
from cliplens.core.errors import InvalidInputError, NotFoundError, ShapeMismatchError
from cliplens.core.models import LoadedClip
from cliplens.store.sample import load_labelled_parquet

PLANTED = (17, 123, 42)


def _planted_head(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Contributions spanned by three known text directions (decreasing strength) plus noise and an offset."""
    generator = torch.Generator().manual_seed(seed)
    texts = F.normalize(torch.randn(200, 64, generator=generator), dim=-1)
    strengths = torch.tensor([5.0, 3.0, 2.0])
    coefficients = torch.randn(400, 3, generator=generator) * strengths
    contributions = (
        coefficients @ texts[list(PLANTED)] + 0.05 * torch.randn(400, 64, generator=generator) + 1.0
    )
    return contributions, texts, [f"text {i}" for i in range(200)]


def test_text_span_recovers_planted_directions_first() -> None:
    contributions, texts, names = _planted_head()
    result = text_span(contributions, texts, names, n_picks=5, rank=10)
    assert [pick.index for pick in result.picks[:3]] == list(PLANTED)
    assert result.texts[:3] == [names[i] for i in PLANTED]
    explained = [pick.variance_explained for pick in result.picks]
    assert sum(explained[:3]) > 0.98
    assert all(e < 0.01 for e in explained[3:])
    centred = contributions - contributions.mean(0)
    error = (result.reconstruction - contributions).pow(2).sum() / centred.pow(2).sum()
    assert float(error) < 0.02


def test_text_span_stops_when_no_variance_is_left() -> None:
    _, texts, names = _planted_head()
    exact = torch.randn(50, 3, generator=torch.Generator().manual_seed(1)) @ texts[list(PLANTED)]
    result = text_span(exact, texts, names, n_picks=10, rank=3)
    assert len(result.picks) == 3
    assert sorted(pick.index for pick in result.picks) == sorted(PLANTED)
    assert sum(pick.variance_explained for pick in result.picks) == pytest.approx(1.0, abs=1e-6)


def test_shipped_description_pool() -> None:
    pool = load_descriptions()
    assert len(pool) >= 1000
    assert len(set(pool)) == len(pool)
    assert all(0 < len(text.split()) <= 10 for text in pool)
    for word in ("red", "striped", "wooden", "night", "beach", "three", "dog", "car", "rain", "painting"):
        assert any(word in text.split() for text in pool), word
    assert DESCRIPTIONS_FILE.is_file()


def test_user_pool_on_a_demo_head(demo_clip: LoadedClip) -> None:
    images = demo_clip.preprocess_images(load_labelled_parquet(limit=40).images)
    pool = ["a red object", "a blue sky", "an animal", "a vehicle", "a green field", "a dark image"]
    result = head_text_span(demo_clip, images, 3, 1, pool, n_picks=4, rank=20)
    assert len(result.picks) == 4
    assert len({pick.index for pick in result.picks}) == 4
    assert all(pick.text == pool[pick.index] for pick in result.picks)
    assert 0 < sum(pick.variance_explained for pick in result.picks) <= 1 + 1e-6
    contributions = head_contributions(demo_clip, images, 3, 1, batch_size=16)
    expected = decompose(demo_clip.model, images, sum_over=PER_HEAD).per_head()[:, 3, 1]
    torch.testing.assert_close(contributions, expected, atol=1e-5, rtol=1e-4)
    assert result.reconstruction.shape == contributions.shape


def test_bad_text_span_inputs_are_rejected(tmp_path: Path, demo_clip: LoadedClip) -> None:
    contributions, texts, names = _planted_head()
    with pytest.raises(ShapeMismatchError, match="do not match contributions of width 64"):
        text_span(contributions, texts[:, :32], names)
    with pytest.raises(ShapeMismatchError, match="199 texts but 200 text embeddings"):
        text_span(contributions, texts, names[:-1])
    with pytest.raises(InvalidInputError, match="n_picks must be between 1 and the pool size 200"):
        text_span(contributions, texts, names, n_picks=0)
    with pytest.raises(InvalidInputError, match="rank must be at least 1"):
        text_span(contributions, texts, names, rank=0)
    with pytest.raises(ShapeMismatchError, match="n_images >= 2"):
        text_span(contributions[:1], texts, names)
    with pytest.raises(NotFoundError, match="description pool not found"):
        load_descriptions(tmp_path / "missing.txt")
    with pytest.raises(InvalidInputError, match="empty or non-string"):
        head_text_span(demo_clip, torch.randn(2, 3, 32, 32), 0, 0, ["a dog", " "])
    with pytest.raises(InvalidInputError, match="head 9 is out of range"):
        head_contributions(demo_clip, torch.randn(2, 3, 32, 32), 0, 9)
