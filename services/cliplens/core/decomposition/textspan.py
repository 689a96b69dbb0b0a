"""TextSpan (Gandelsman et al., ICLR 2024): describe one head by the texts that span its contributions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from cliplens.core.decomposition.decompose import PER_HEAD, decompose, image_batches
from cliplens.core.errors import InvalidInputError, NotFoundError, ShapeMismatchError
from cliplens.core.models import ASSETS_DIR, LoadedClip

DESCRIPTIONS_FILE = ASSETS_DIR / "descriptions.txt"
# Picks whose remaining variance falls below this fraction of the total explain nothing more.
MIN_VARIANCE_FRACTION = 1e-9
# Singular directions weaker than this fraction of the strongest are rounding noise, not the head's span
# (a head's contributions span at most head_dim + 3 directions, often fewer than ``rank``).
RANK_TOLERANCE = 1e-5


@dataclass(frozen=True)
class TextSpanPick:
    """One chosen description, its index in the pool, and the fraction of the head's variance it explains."""

    text: str
    index: int
    variance_explained: float


@dataclass(frozen=True)
class TextSpanResult:
    """The picks in order, and the head's contributions rebuilt from their mean and the picked directions."""

    picks: list[TextSpanPick]
    reconstruction: Float[Tensor, "n_images d_embed"]

    @property
    def texts(self) -> list[str]:
        return [pick.text for pick in self.picks]


def load_descriptions(path: str | Path = DESCRIPTIONS_FILE) -> list[str]:
    """The description pool: one description a line (blank lines skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise NotFoundError(f"description pool not found at {path}") from None
    return _check_pool([line.strip() for line in lines if line.strip()])


@torch.no_grad()
def text_span(
    contributions: Float[Tensor, "n_images d_embed"],
    text_embeddings: Float[Tensor, "n_texts d_embed"],
    texts: Sequence[str],
    *,
    n_picks: int = 10,
    rank: int = 80,
) -> TextSpanResult:
    """Greedily pick up to ``n_picks`` texts that explain the most variance of ``contributions``.

    The texts are unit-normalised, then projected onto the span of the top-``rank`` right singular
    vectors of the contributions (leaving out those below :data:`RANK_TOLERANCE` times the largest
    singular value, whose directions are rounding noise and would make the picks arbitrary). Each
    pick maximises the variance over images of ``C t_j``; its direction is then removed from the
    centred contributions and from the remaining texts. Fewer picks come back when the contributions
    have no variance left to explain.
    """
    _check_span_inputs(contributions, text_embeddings, texts, n_picks, rank)
    data = contributions.double()
    _, singular, vh = torch.linalg.svd(data, full_matrices=False)
    basis = vh[:rank][singular[:rank] > RANK_TOLERANCE * singular[0]]
    candidates = F.normalize(text_embeddings.double(), dim=-1) @ basis.T @ basis
    mean = data.mean(0, keepdim=True)
    data = data - mean
    reconstruction = mean.expand_as(data).clone()
    total = float(data.pow(2).sum())
    picks: list[TextSpanPick] = []
    for _ in range(n_picks):
        variance = (data @ candidates.T).var(0)
        best = int(variance.argmax())
        direction = F.normalize(candidates[best], dim=0)
        removed = (data @ direction)[:, None] * direction
        explained = float(removed.pow(2).sum())
        if explained <= MIN_VARIANCE_FRACTION * total:
            break
        picks.append(TextSpanPick(texts[best], best, explained / total))
        reconstruction += removed
        data = data - removed
        candidates = candidates - (candidates @ direction)[:, None] * direction
    return TextSpanResult(picks, reconstruction.to(contributions.dtype))


@torch.no_grad()
def head_contributions(
    clip: LoadedClip, images: Float[Tensor, "n 3 height width"], layer: int, head: int, batch_size: int = 64
) -> Float[Tensor, "n d_embed"]:
    """One head's direct contributions (summed over source tokens) to each image's embedding."""
    parts = [
        decompose(clip.model, batch, sum_over=PER_HEAD).head(layer, head)
        for batch in image_batches(images, batch_size, clip.device)
    ]
    return torch.cat(parts)


@torch.no_grad()
def all_head_contributions(
    clip: LoadedClip,
    images: Float[Tensor, "n 3 height width"],
    layers: Sequence[int] | None = None,
    batch_size: int = 64,
) -> Float[Tensor, "n n_layers heads d_embed"]:
    """Every head's direct contributions from one decomposition pass (only ``layers``, in that order, if given)."""
    parts = []
    for batch in image_batches(images, batch_size, clip.device):
        decomposition = decompose(clip.model, batch, sum_over=PER_HEAD)
        for layer in layers or ():
            decomposition.check_layer(layer)
        heads = decomposition.per_head()
        parts.append(heads if layers is None else heads[:, list(layers)])
    return torch.cat(parts)


@torch.no_grad()
def embed_descriptions(clip: LoadedClip, pool: Sequence[str]) -> Float[Tensor, "n_texts d_embed"]:
    """The pool's text embeddings (fp32, not normalised), encoded in chunks of 256."""
    pool = _check_pool(list(pool))
    return torch.cat([clip.encode_texts(pool[i : i + 256]).float() for i in range(0, len(pool), 256)])


@torch.no_grad()
def head_text_span(
    clip: LoadedClip,
    images: Float[Tensor, "n 3 height width"],
    layer: int,
    head: int,
    descriptions: Sequence[str] | None = None,
    *,
    n_picks: int = 10,
    rank: int = 80,
    batch_size: int = 64,
) -> TextSpanResult:
    """TextSpan of head ``(layer, head)`` over ``images`` with a description pool (the shipped one by default)."""
    pool = load_descriptions() if descriptions is None else _check_pool(list(descriptions))
    contributions = head_contributions(clip, images, layer, head, batch_size)
    return text_span(contributions, embed_descriptions(clip, pool), pool, n_picks=n_picks, rank=rank)


def _check_pool(pool: list[str]) -> list[str]:
    if not pool:
        raise InvalidInputError("the description pool must not be empty")
    bad = [text for text in pool if not isinstance(text, str) or not text.strip()]
    if bad:
        raise InvalidInputError(
            f"the description pool holds {len(bad)} empty or non-string entries, e.g. {bad[0]!r}"
        )
    return pool


def _check_span_inputs(
    contributions: Tensor, text_embeddings: Tensor, texts: Sequence[str], n_picks: int, rank: int
) -> None:
    if contributions.dim() != 2 or contributions.shape[0] < 2:
        raise ShapeMismatchError(
            f"contributions must be (n_images >= 2, d_embed), got {tuple(contributions.shape)}"
        )
    if text_embeddings.dim() != 2 or text_embeddings.shape[1] != contributions.shape[1]:
        raise ShapeMismatchError(
            f"text embeddings of shape {tuple(text_embeddings.shape)} do not match contributions of width "
            f"{contributions.shape[1]}"
        )
    if len(texts) != text_embeddings.shape[0]:
        raise ShapeMismatchError(f"{len(texts)} texts but {text_embeddings.shape[0]} text embeddings")
    if not 1 <= n_picks <= len(texts):
        raise InvalidInputError(f"n_picks must be between 1 and the pool size {len(texts)}, got {n_picks}")
    if rank < 1:
        raise InvalidInputError(f"rank must be at least 1, got {rank}")
