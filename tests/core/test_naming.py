"""Latent naming: vocabularies, alignment, clarity, the unaligned finder and text search."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.models import LoadedClip
from cliplens.core.naming import (
    LatentActivations,
    Vocabulary,
    clarity,
    decoder_alignment,
    embed_vocabulary,
    find_unaligned,
    latent_activations,
    load_vocabulary,
    profile_latents,
    relative_alignment,
    search_latents,
    top_labels,
)
from cliplens.core.sae import Sae, TopKConfig, build_sae
from cliplens.store.sample import load_labelled_parquet

LABELS = ["cat", "truck", "airplane", "frog", "ship", "horse"]


@pytest.fixture(scope="module")
def vocabulary(demo_clip: LoadedClip) -> Vocabulary:
    return embed_vocabulary(demo_clip, LABELS)


@pytest.fixture(scope="module")
def text_sae(vocabulary: Vocabulary) -> Sae:
    """A TopK SAE at ``final`` whose decoder rows are the vocabulary's text embeddings."""
    sae = build_sae(TopKConfig(d_in=vocabulary.embeddings.shape[1], d_sae=len(LABELS), k=2, site="final"))
    with torch.no_grad():
        sae.W_dec.copy_(vocabulary.embeddings)
        sae.W_enc.copy_(vocabulary.embeddings.T)
    return sae.eval()


def test_shipped_vocabularies_hold_cifar100_and_imagenet_names() -> None:
    cifar100, imagenet, default = load_vocabulary("cifar100"), load_vocabulary("imagenet"), load_vocabulary()
    assert len(cifar100) == 100 and len(set(cifar100)) == 100
    assert len(imagenet) == 1000 and imagenet[0] == "tench" and "jaguar" in imagenet
    assert "aquarium fish" in cifar100
    assert set(default) == set(cifar100) | set(imagenet) and len(default) == len(set(default))


def test_unknown_vocabulary_is_named() -> None:
    with pytest.raises(NotFoundError, match="unknown vocabulary 'imagenet21k'"):
        load_vocabulary("imagenet21k")


def test_clarity_is_the_mean_pairwise_cosine() -> None:
    embeddings = torch.randn(3, 7, 16) + torch.tensor([2.0] + [0.0] * 15)
    unit = F.normalize(embeddings, dim=-1)
    cosines = unit @ unit.transpose(-1, -2)
    off_diagonal = ~torch.eye(7, dtype=torch.bool)
    expected = cosines[:, off_diagonal].mean(-1)
    assert torch.allclose(clarity(embeddings), expected, atol=1e-5)
    assert torch.allclose(clarity(torch.ones(4, 5)[None]), torch.ones(1))


def test_clarity_needs_two_images() -> None:
    with pytest.raises(InvalidInputError, match="at least 2 embeddings"):
        clarity(torch.randn(5, 1, 8))


def constructed_vocabulary() -> Vocabulary:
    basis = torch.eye(4)
    return Vocabulary(["zero", "one", "two"], basis[:3], basis[3])


def test_relative_alignment_subtracts_the_empty_prompt() -> None:
    vector = torch.tensor([[0.0, 3.0, 0.0, 4.0]])  # unit: 0.6 e1 + 0.8 e_empty
    scores = relative_alignment(vector, constructed_vocabulary())
    assert torch.allclose(scores, torch.tensor([[-0.8, -0.2, -0.8]]))


def test_profiles_label_latents_by_their_top_images_and_find_extremes() -> None:
    vocabulary = constructed_vocabulary()
    # images 0-3 lie near "one", images 4-7 spread over "zero" and "two" (unclear).
    embeddings = torch.tensor(
        [[0.0, 1.0, 0.0, 0.1]] * 4 + [[1.0, 0.0, 0.0, 0.1], [0.0, 0.0, 1.0, 0.1]] * 2, dtype=torch.float32
    )
    latents = torch.zeros(8, 3)
    latents[:4, 0] = 5.0  # latent 0 fires strongly on the "one" images
    latents[4:, 1] = 3.0  # latent 1 fires on the mixed images
    latents[0, 2] = 0.1  # latent 2 barely fires
    profiles = profile_latents(LatentActivations(latents, embeddings), vocabulary, top_n=4)
    assert profiles.label(0).label == "one"
    assert profiles.clarity[0] == pytest.approx(1.0, abs=1e-5)
    assert float(profiles.clarity[1]) < 0.5
    assert profiles.mean_activation.tolist() == pytest.approx([5.0, 3.0, 0.025])
    assert sorted(profiles.top_images[0].tolist()) == [0, 1, 2, 3]
    extremes = find_unaligned(profiles, min_activation=1.0, clarity_range=(-1.0, 1.0), count=1)
    assert (extremes.candidates, extremes.most_aligned, extremes.least_aligned) == (2, [0], [1])
    assert find_unaligned(profiles, min_activation=1.0).most_aligned == [0]  # latent 1 is not clear
    with pytest.raises(InvalidInputError, match="latent index 3 is out of range"):
        profiles.label(3)


def test_empty_or_blank_vocabulary_is_rejected(demo_clip: LoadedClip) -> None:
    with pytest.raises(InvalidInputError, match="vocabulary is empty"):
        embed_vocabulary(demo_clip, [])
    with pytest.raises(InvalidInputError, match="blank labels at positions \\[1\\]"):
        embed_vocabulary(demo_clip, ["cat", "  "])


def test_decoder_alignment_names_latents_by_their_direction(
    demo_clip: LoadedClip, vocabulary: Vocabulary, text_sae: Sae
) -> None:
    alignment = decoder_alignment(demo_clip, text_sae, vocabulary)
    assert alignment.shape == (len(LABELS), len(LABELS))
    assert torch.allclose(alignment.diagonal(), torch.ones(len(LABELS)), atol=1e-4)
    assert [top_labels(alignment, vocabulary, k, k=1)[0].label for k in range(len(LABELS))] == LABELS
    with pytest.raises(InvalidInputError, match="latent index 6 is out of range"):
        top_labels(alignment, vocabulary, len(LABELS))


def test_search_finds_the_latent_written_for_the_query(demo_clip: LoadedClip, text_sae: Sae) -> None:
    hits = search_latents(demo_clip, text_sae, "airplane", top=3)
    assert hits[0].latent == LABELS.index("airplane") and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    with pytest.raises(InvalidInputError, match="search query is empty"):
        search_latents(demo_clip, text_sae, " ")


def test_latent_activations_pool_patch_sites_by_max(demo_clip: LoadedClip) -> None:
    sample = load_labelled_parquet(limit=24)
    pixels = demo_clip.preprocess_images(sample.images)
    sae = build_sae(TopKConfig(d_in=128, d_sae=64, k=4, site="resid:3:patches")).eval()
    out = latent_activations(demo_clip, sae, pixels, batch_size=10)
    assert out.latents.shape == (24, 64) and out.embeddings.shape == (24, demo_clip.embed_dim)
    assert bool((out.latents >= 0).all()) and bool((out.latents > 0).any())
