"""Steering in SAE space: add, subtract or clamp latents of an activation, keeping the SAE's error term.

With ``z = encode(h)`` and ``z'`` the edited latents, the steered activation is
``decode(z') + (h - decode(z)) = h + (z' - z) @ D`` (``D`` the decoder directions), computed in the
second form so that no reconstruction error leaks in. Adding and subtracting are therefore exact
inverses, whatever the SAE's encoder does with the steered input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from PIL import Image
from torch import Tensor

from cliplens.core.attribution import check_images, normalized_texts
from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.models import LoadedClip
from cliplens.core.sae import Sae
from cliplens.core.sites import encode_images
from cliplens.core.zeroshot import check_sae_fits

SteerMode = Literal["add", "subtract", "clamp"]
STEER_MODES: tuple[SteerMode, ...] = get_args(SteerMode)


@dataclass(frozen=True)
class LatentEdit:
    """One latent change: ``add`` or ``subtract`` ``value`` to ``z_k``, or ``clamp`` it to ``value``."""

    latent: int
    value: float
    mode: SteerMode = "add"


def steer_activations(
    sae: Sae, activations: Float[Tensor, "*batch d_in"], edits: Sequence[LatentEdit]
) -> Float[Tensor, "*batch d_in"]:
    """Activations at the SAE's site with ``edits`` applied in SAE space (error term kept).

    For an SAE at ``final`` the activations are the image embeddings themselves.
    """
    _check_edits(sae, edits)
    with torch.no_grad():
        h = activations.float()
        z = sae.encode(h)
        steered = z.clone()
        for edit in edits:
            if edit.mode == "clamp":
                steered[..., edit.latent] = edit.value
            else:
                steered[..., edit.latent] += edit.value if edit.mode == "add" else -edit.value
        return (h + (steered - z) @ sae.decoder_directions()).to(activations.dtype)


def steer_images(
    clip: LoadedClip,
    sae: Sae,
    images: Float[Tensor, "batch 3 height width"],
    edits: Sequence[LatentEdit],
) -> Float[Tensor, "batch d_embed"]:
    """Image embeddings (not normalised) with ``edits`` applied at the SAE's site on the way through."""
    site = check_sae_fits(sae, clip)
    check_images(clip, images)
    _check_edits(sae, edits)
    with torch.no_grad():
        return encode_images(
            clip.model,
            images.to(clip.device, clip.dtype),
            edits={site: lambda h: steer_activations(sae, h, edits)},
        ).embedding


def _check_edits(sae: Sae, edits: Sequence[LatentEdit]) -> None:
    if not edits:
        raise InvalidInputError("give at least one latent edit to steer with")
    for edit in edits:
        sae.check_index(edit.latent)
        if edit.mode not in STEER_MODES:
            raise InvalidInputError(
                f"unknown steering mode '{edit.mode}'; choose one of {', '.join(STEER_MODES)}"
            )
        if not math.isfinite(edit.value):
            raise InvalidInputError(
                f"steering value for latent {edit.latent} must be finite, got {edit.value}"
            )


@dataclass(frozen=True)
class Neighbours:
    """Indices into the embedding bank of the ``k`` nearest embeddings (by cosine) and their cosines."""

    ids: Int[Tensor, "batch k"]
    similarities: Float[Tensor, "batch k"]


@dataclass(frozen=True)
class SteeringEffect:
    """Zero-shot class probabilities and nearest neighbours before and after steering."""

    probabilities_before: Float[Tensor, "batch n_classes"]
    probabilities_after: Float[Tensor, "batch n_classes"]
    neighbours_before: Neighbours
    neighbours_after: Neighbours

    @property
    def probability_change(self) -> Float[Tensor, "batch n_classes"]:
        return self.probabilities_after - self.probabilities_before


def nearest_neighbours(
    embeddings: Float[Tensor, "batch d_embed"], bank: Float[Tensor, "n d_embed"], k: int
) -> Neighbours:
    """The ``k`` embeddings of ``bank`` closest in cosine to each of ``embeddings``."""
    if bank.ndim != 2 or bank.shape[-1] != embeddings.shape[-1]:
        raise ShapeMismatchError(
            f"embedding bank must have shape (n, {embeddings.shape[-1]}), got {tuple(bank.shape)}"
        )
    if not 1 <= k <= bank.shape[0]:
        raise InvalidInputError(f"k must be in [1, {bank.shape[0]}] (the bank's size), got {k}")
    cosines = F.normalize(embeddings.float(), dim=-1) @ F.normalize(bank.float(), dim=-1).T.to(
        embeddings.device
    )
    similarities, ids = cosines.topk(k, dim=-1)
    return Neighbours(ids, similarities)


def steering_effect(
    clip: LoadedClip,
    original: Float[Tensor, "batch d_embed"],
    steered: Float[Tensor, "batch d_embed"],
    classifier: Float[Tensor, "n_classes d_embed"],
    bank: Float[Tensor, "n d_embed"],
    k: int = 5,
) -> SteeringEffect:
    """Class probabilities (softmax of the model's scaled cosines) and neighbours, before and after."""
    if original.shape != steered.shape:
        raise ShapeMismatchError(
            f"original {tuple(original.shape)} and steered {tuple(steered.shape)} embeddings differ in shape"
        )
    classes = normalized_texts(clip, classifier)
    scale = float(clip.model.logit_scale.detach().exp())

    def probabilities(embeddings: Tensor) -> Tensor:
        return (scale * F.normalize(embeddings.float(), dim=-1) @ classes.T).softmax(-1)

    return SteeringEffect(
        probabilities(original),
        probabilities(steered),
        nearest_neighbours(original, bank, k),
        nearest_neighbours(steered, bank, k),
    )


@runtime_checkable
class EmbeddingImageGenerator(Protocol):
    """Extension point for generative back ends that render images from CLIP image embeddings.

    Examples are unCLIP-style decoders or a Kandinsky-2.2-style decoder conditioned on the image
    embeddings of the same CLIP model. An implementation states the model whose embedding space it
    accepts (``model_id``, ``embed_dim``) and receives un-normalised embeddings such as those from
    :func:`steer_images`; it normalises or rescales them as its training requires. None ships with
    cliplens (no such model runs here); services look implementations up by ``model_id``.
    """

    model_id: str
    embed_dim: int

    def generate(self, embeddings: Float[Tensor, "batch d_embed"], *, seed: int = 0) -> list[Image.Image]:
        """One image per embedding; the same ``seed`` gives the same images."""
        ...
