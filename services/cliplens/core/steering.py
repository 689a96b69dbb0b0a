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
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from cliplens.core.attribution import check_images, normalized_texts
from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.models import LoadedClip
from cliplens.core.sae import Sae
from cliplens.core.sites import encode_images
from cliplens.core.zeroshot import check_sae_fits, class_probabilities, text_classifier

SteerMode = Literal["add", "subtract", "clamp"]
STEER_MODES: tuple[SteerMode, ...] = get_args(SteerMode)


@dataclass(frozen=True)
class LatentEdit:
    """One latent change: ``add`` or ``subtract`` ``value`` to ``z_k``, or ``clamp`` it to ``value``."""

    latent: int
    value: float
    mode: SteerMode = "add"


def check_edits(edits: Sequence[LatentEdit], d_sae: int, field: str = "edits") -> list[LatentEdit]:
    """``edits`` checked for an SAE with ``d_sae`` latents, as plain ``int``/``float`` edits.

    Raises :class:`InvalidInputError` naming the offending field, e.g.
    ``edits[3].latent: 70000 is not in [0, 256)`` or ``edits[0].value: must be finite``.
    """
    if not edits:
        raise InvalidInputError(f"{field}: give at least one latent edit to steer with")
    checked = []
    for i, edit in enumerate(edits):
        at = f"{field}[{i}]"
        if edit.mode not in STEER_MODES:
            raise InvalidInputError(
                f"{at}.mode: unknown steering mode '{edit.mode}'; choose one of {', '.join(STEER_MODES)}"
            )
        if not 0 <= edit.latent < d_sae:
            raise InvalidInputError(f"{at}.latent: {edit.latent} is not in [0, {d_sae})")
        if not math.isfinite(edit.value):
            raise InvalidInputError(f"{at}.value: must be finite")
        checked.append(LatentEdit(int(edit.latent), float(edit.value), edit.mode))
    return checked


def steer_activations(
    sae: Sae, activations: Float[Tensor, "*batch d_in"], edits: Sequence[LatentEdit]
) -> Float[Tensor, "*batch d_in"]:
    """Activations at the SAE's site with ``edits`` applied in SAE space (error term kept).

    For an SAE at ``final`` the activations are the image embeddings themselves.
    """
    edits = check_edits(edits, sae.cfg.d_sae)
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
    edits = check_edits(edits, sae.cfg.d_sae)
    with torch.no_grad():
        return encode_images(
            clip.model,
            images.to(clip.device, clip.dtype),
            edits={site: lambda h: steer_activations(sae, h, edits)},
        ).embedding


@dataclass(frozen=True)
class SteeringOutcome:
    """Image embeddings (float32, not normalised) before and after steering, with the zero-shot class
    probabilities of each; with no class names the probabilities have shape ``(batch, 0)``."""

    original: Float[Tensor, "batch d_embed"]
    steered: Float[Tensor, "batch d_embed"]
    probabilities_before: Float[Tensor, "batch n_classes"]
    probabilities_after: Float[Tensor, "batch n_classes"]


def steer_and_classify(
    clip: LoadedClip,
    sae: Sae,
    images: Float[Tensor, "batch 3 height width"],
    edits: Sequence[LatentEdit],
    class_names: Sequence[str] = (),
) -> SteeringOutcome:
    """Steer ``images`` (:func:`steer_images`) and classify both embeddings zero-shot over ``class_names``
    (:func:`~cliplens.core.zeroshot.text_classifier`, :func:`~cliplens.core.zeroshot.class_probabilities`)."""
    steered = steer_images(clip, sae, images, edits).float()
    with torch.no_grad():
        original = encode_images(clip.model, images.to(clip.device, clip.dtype)).embedding.float()
        classifier = (
            text_classifier(clip, class_names)
            if class_names
            else torch.empty(0, clip.embed_dim, device=clip.device)
        )
        return SteeringOutcome(
            original,
            steered,
            class_probabilities(clip, original, classifier),
            class_probabilities(clip, steered, classifier),
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
    return SteeringEffect(
        class_probabilities(clip, original, classes),
        class_probabilities(clip, steered, classes),
        nearest_neighbours(original, bank, k),
        nearest_neighbours(steered, bank, k),
    )
