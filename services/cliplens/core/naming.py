"""Naming SAE latents with a text vocabulary (Dreyer et al. 2025, methods.md §1).

Two views of a latent, both compared with the vocabulary's text embeddings by cosine:

- its decoder direction mapped into the image-embedding space (input-independent, the logit lens);
- the mean embedding of its top activating images, scored relative to the empty prompt ``""``,
  together with the *clarity* of those images (their mean pairwise cosine).

On top of these: the search for strongly firing, clear latents that align best and worst with any
label (the "semantically unaligned" finder), and text -> latents search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from cliplens.core.attribution import logit_lens
from cliplens.core.errors import InvalidInputError, NotFoundError, ShapeMismatchError
from cliplens.core.models import ASSETS_DIR, LoadedClip
from cliplens.core.sae import Sae
from cliplens.core.sites import encode_images
from cliplens.core.zeroshot import check_sae_fits, embed_texts

VOCABULARY_DIR = ASSETS_DIR / "vocabulary"
VOCABULARY_FILES: dict[str, Path] = {
    "cifar100": VOCABULARY_DIR / "cifar100.txt",
    "imagenet": VOCABULARY_DIR / "imagenet.txt",
}
DEFAULT_VOCABULARY = "default"
PLAIN_TEMPLATE: tuple[str, ...] = ("{}",)


def load_vocabulary(name: str = DEFAULT_VOCABULARY) -> list[str]:
    """A shipped vocabulary: ``cifar100`` (100 names), ``imagenet`` (1,000, in class-index order) or
    ``default`` (both, duplicates removed, order kept)."""
    if name == DEFAULT_VOCABULARY:
        return list(dict.fromkeys(label for key in VOCABULARY_FILES for label in load_vocabulary(key)))
    if name not in VOCABULARY_FILES:
        choices = ", ".join([DEFAULT_VOCABULARY, *VOCABULARY_FILES])
        raise NotFoundError(f"unknown vocabulary '{name}'; choose one of {choices}")
    return VOCABULARY_FILES[name].read_text().splitlines()


def check_labels(labels: Sequence[str]) -> list[str]:
    """``labels`` as a list; raises when it is empty or holds a blank label."""
    labels = list(labels)
    if not labels:
        raise InvalidInputError("the vocabulary is empty; give at least one label")
    blank = [i for i, label in enumerate(labels) if not label.strip()]
    if blank:
        raise InvalidInputError(f"the vocabulary has blank labels at positions {blank[:10]}")
    return labels


@dataclass(frozen=True)
class Vocabulary:
    """Labels with their unit-norm text embeddings and that of the empty prompt (same templates)."""

    labels: list[str]
    embeddings: Float[Tensor, "n_labels d_embed"]
    empty: Float[Tensor, " d_embed"]


@torch.no_grad()
def embed_vocabulary(
    clip: LoadedClip, labels: Sequence[str], templates: Sequence[str] = PLAIN_TEMPLATE
) -> Vocabulary:
    """Embed a vocabulary (a shipped one from :func:`load_vocabulary` or the caller's own labels).

    Runs without autograd, so the embeddings hold no graph even for a model whose weights require grad.
    """
    labels = check_labels(labels)
    embeddings = embed_texts(clip, [*labels, ""], templates).cpu()
    return Vocabulary(labels, embeddings[:-1], embeddings[-1])


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class LatentScore:
    latent: int
    score: float


def relative_alignment(
    vectors: Float[Tensor, "n_latents d_embed"], vocabulary: Vocabulary
) -> Float[Tensor, "n_latents n_labels"]:
    """``cos(v, T(label)) - cos(v, T(""))`` for each vector and label."""
    if vectors.shape[-1] != vocabulary.embeddings.shape[-1]:
        raise ShapeMismatchError(
            f"vectors of width {vectors.shape[-1]} do not match text embeddings of width "
            f"{vocabulary.embeddings.shape[-1]}"
        )
    unit = F.normalize(vectors.float().cpu(), dim=-1)
    return unit @ vocabulary.embeddings.T - (unit @ vocabulary.empty)[:, None]


def decoder_alignment(clip: LoadedClip, sae: Sae, vocabulary: Vocabulary) -> Float[Tensor, "d_sae n_labels"]:
    """Cosine of each latent's decoder direction (in embedding space) with each label: the logit lens."""
    return logit_lens(clip, sae, vocabulary.embeddings).T.cpu()


def top_labels(
    alignment: Float[Tensor, "n_latents n_labels"], vocabulary: Vocabulary, latent: int, k: int = 5
) -> list[LabelScore]:
    """The ``k`` labels that align best with ``latent`` (a row of an alignment matrix)."""
    if not 0 <= latent < alignment.shape[0]:
        raise InvalidInputError(f"latent index {latent} is out of range [0, {alignment.shape[0]})")
    scores, indices = alignment[latent].topk(min(k, alignment.shape[1]))
    return [LabelScore(vocabulary.labels[int(i)], float(s)) for s, i in zip(scores, indices, strict=True)]


def clarity(embeddings: Float[Tensor, "*latents n d_embed"]) -> Float[Tensor, "*latents"]:
    """``(||mean_i e_i||^2 - 1/n) * n/(n-1)`` of unit-normalised ``e_i``: their mean pairwise cosine."""
    n = embeddings.shape[-2]
    if n < 2:
        raise InvalidInputError(f"clarity needs at least 2 embeddings per latent, got {n}")
    mean = F.normalize(embeddings.float(), dim=-1).mean(-2)
    return (mean.pow(2).sum(-1) - 1.0 / n) * n / (n - 1)


@dataclass(frozen=True)
class LatentActivations:
    """SAE latents and image embeddings of the same images (patch sites: max over patches)."""

    latents: Float[Tensor, "n_images d_sae"]
    embeddings: Float[Tensor, "n_images d_embed"]


@torch.no_grad()
def latent_activations(
    clip: LoadedClip, sae: Sae, images: Float[Tensor, "n_images 3 height width"], batch_size: int = 256
) -> LatentActivations:
    """Encode ``images`` once per batch, returning their SAE latents and image embeddings."""
    site = check_sae_fits(sae, clip)
    latents, embeddings = [], []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(clip.device, clip.dtype)
        out = encode_images(clip.model, batch, sites=[site])
        z = sae.encode(out[site].float().to(sae.W_dec.device))
        latents.append((z.amax(1) if site.patches else z).cpu())
        embeddings.append(out.embedding.float().cpu())
    return LatentActivations(torch.cat(latents), torch.cat(embeddings))


@dataclass(frozen=True)
class LatentProfiles:
    """Per latent: its top images, their mean activation and clarity, and its best label.

    ``mean_embeddings`` is the mean of the top images' unit-normalised embeddings; ``alignment`` its
    best label's score relative to the empty prompt and ``label_index`` that label's position.
    """

    vocabulary: Vocabulary
    top_images: Int[Tensor, "d_sae top_n"]
    mean_activation: Float[Tensor, " d_sae"]
    clarity: Float[Tensor, " d_sae"]
    mean_embeddings: Float[Tensor, "d_sae d_embed"]
    alignment: Float[Tensor, " d_sae"]
    label_index: Int[Tensor, " d_sae"]

    def label(self, latent: int) -> LabelScore:
        if not 0 <= latent < self.alignment.shape[0]:
            raise InvalidInputError(f"latent index {latent} is out of range [0, {self.alignment.shape[0]})")
        return LabelScore(
            self.vocabulary.labels[int(self.label_index[latent])], float(self.alignment[latent])
        )


def profile_latents(
    activations: LatentActivations, vocabulary: Vocabulary, top_n: int = 20, chunk: int = 1024
) -> LatentProfiles:
    """Profile every latent from its ``top_n`` activating images (Dreyer et al.: 20)."""
    z, embeddings = activations.latents, F.normalize(activations.embeddings.float(), dim=-1)
    if not 2 <= top_n <= z.shape[0]:
        raise InvalidInputError(f"top_n must be in [2, {z.shape[0]}] (the number of images), got {top_n}")
    values, top_images = z.topk(top_n, dim=0)
    top_images = top_images.T.contiguous()
    clarities, means = [], []
    for start in range(0, top_images.shape[0], chunk):
        picked = embeddings[top_images[start : start + chunk]]
        clarities.append(clarity(picked))
        means.append(picked.mean(1))
    mean_embeddings = torch.cat(means)
    scores = relative_alignment(mean_embeddings, vocabulary)
    alignment, label_index = scores.max(-1)
    return LatentProfiles(
        vocabulary, top_images, values.mean(0), torch.cat(clarities), mean_embeddings, alignment, label_index
    )


@dataclass(frozen=True)
class AlignmentExtremes:
    """Strongly firing, clear latents: those aligned best and worst with any label of the vocabulary."""

    candidates: int
    most_aligned: list[int]
    least_aligned: list[int]


def find_unaligned(
    profiles: LatentProfiles,
    min_activation: float,
    clarity_range: tuple[float, float] = (0.4, 1.0),
    count: int = 10,
) -> AlignmentExtremes:
    """Among latents with mean top activation above ``min_activation`` and clarity in
    ``clarity_range`` (the paper: 0.4 to 1.0), the ``count`` most and least aligned ones."""
    low, high = clarity_range
    if low > high:
        raise InvalidInputError(f"clarity_range must be (low, high) with low <= high, got {clarity_range}")
    keep = (
        (profiles.mean_activation > min_activation) & (profiles.clarity >= low) & (profiles.clarity <= high)
    )
    candidates = keep.nonzero().flatten()
    order = candidates[profiles.alignment[candidates].argsort(descending=True)].tolist()
    return AlignmentExtremes(len(order), order[:count], order[::-1][:count])


def search_latents(
    clip: LoadedClip, sae: Sae, query: str, top: int = 10, templates: Sequence[str] = PLAIN_TEMPLATE
) -> list[LatentScore]:
    """The ``top`` latents whose decoder directions align best with the text ``query``."""
    if not query.strip():
        raise InvalidInputError("the search query is empty")
    scores = logit_lens(clip, sae, embed_texts(clip, [query], templates))[0].cpu()
    values, indices = scores.topk(min(top, scores.shape[0]))
    return [LatentScore(int(i), float(v)) for v, i in zip(values, indices, strict=True)]
