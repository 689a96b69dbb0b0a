"""The Attributor's text-embedding cache: same embeddings as the model, LRU eviction, per model."""

from __future__ import annotations

import torch

from cliplens.core.models import LoadedClip
from cliplens.serve.text_cache import TextEmbeddingCache


def test_cached_embeddings_equal_the_model_and_keep_order(tiny_clip: LoadedClip) -> None:
    cache = TextEmbeddingCache(capacity=8)
    texts = ["a cat", "a dog", "a cat"]
    with torch.no_grad():
        expected = tiny_clip.encode_texts(texts)
    first = cache.embed(tiny_clip, texts)
    assert len(cache) == 2 and torch.allclose(first, expected, atol=1e-6)
    again = cache.embed(tiny_clip, ["a dog", "a bird", "a cat"])
    assert torch.equal(again[0], first[1]) and torch.equal(again[2], first[0])
    assert len(cache) == 3 and not again.requires_grad


def test_least_recently_used_texts_are_evicted(tiny_clip: LoadedClip) -> None:
    cache = TextEmbeddingCache(capacity=2)
    cache.embed(tiny_clip, ["a"])
    cache.embed(tiny_clip, ["b"])
    cache.embed(tiny_clip, ["a"])  # "a" is now the most recent
    cache.embed(tiny_clip, ["c"])
    held = {text for text in "abc" if (tiny_clip.spec.id, text) in cache}
    assert held == {"a", "c"} and len(cache) == 2


def test_capacity_zero_keeps_nothing(tiny_clip: LoadedClip) -> None:
    cache = TextEmbeddingCache(capacity=0)
    assert cache.embed(tiny_clip, ["a cat", "a dog"]).shape == (2, tiny_clip.embed_dim)
    assert len(cache) == 0
