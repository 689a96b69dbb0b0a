"""Zero-shot classification: text classifiers from prompt templates, accuracy with and without an SAE
spliced in at its site, and the SAE evaluation table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.models import LoadedClip
from cliplens.core.prompts import PHOTO_TEMPLATES
from cliplens.core.sae import Sae
from cliplens.core.sites import Site, SiteEdit, encode_images


@torch.no_grad()
def text_classifier(
    clip: LoadedClip, class_names: Sequence[str], templates: Sequence[str] = PHOTO_TEMPLATES
) -> Float[Tensor, "n_classes d_embed"]:
    """Unit-norm class embeddings: the mean of each class's normalised prompt embeddings."""
    if not class_names:
        raise InvalidInputError("class_names must not be empty")
    return embed_texts(clip, class_names, templates)


def embed_texts(
    clip: LoadedClip, labels: Sequence[str], templates: Sequence[str] = ("{}",), batch_size: int = 512
) -> Float[Tensor, "n_labels d_embed"]:
    """Unit-norm embedding of each label: the normalised mean of its normalised prompt embeddings.

    Prompts are encoded in batches (one forward pass per ``batch_size`` prompts), so large
    vocabularies are cheap; blank labels are allowed here (the empty prompt is one).
    """
    if not labels or not templates:
        raise InvalidInputError("embed_texts needs at least one label and one template")
    prompts = [template.format(label) for label in labels for template in templates]
    chunks = [
        F.normalize(clip.encode_texts(prompts[i : i + batch_size]).float(), dim=-1)
        for i in range(0, len(prompts), batch_size)
    ]
    per_prompt = torch.cat(chunks).view(len(labels), len(templates), -1)
    return F.normalize(per_prompt.mean(1), dim=-1)


def check_sae_fits(sae: Sae, clip: LoadedClip) -> Site:
    """The SAE's site in ``clip``; raises if the site is missing or its width differs from ``d_in``."""
    site = Site.parse(sae.cfg.site)
    width = site.width(clip.model.visual)
    if width != sae.cfg.d_in:
        raise ShapeMismatchError(
            f"SAE d_in={sae.cfg.d_in} does not match site '{site}' of model '{clip.spec.id}' (width {width})"
        )
    return site


def sae_splice(sae: Sae) -> SiteEdit:
    """An edit that replaces a site's value by the SAE's reconstruction of it."""

    def splice(h: Tensor) -> Tensor:
        return sae(h.float()).to(h.dtype)

    return splice


@torch.no_grad()
def zero_shot_logits(
    clip: LoadedClip,
    images: Float[Tensor, "batch 3 height width"],
    classifier: Float[Tensor, "n_classes d_embed"],
    sae: Sae | None = None,
    batch_size: int = 256,
) -> Float[Tensor, "batch n_classes"]:
    """Cosine similarities of each image to each class, optionally with ``sae`` spliced in."""
    edits: dict[str | Site, SiteEdit] | None = (
        {check_sae_fits(sae, clip): sae_splice(sae)} if sae is not None else None
    )
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(clip.device, clip.dtype)
        out.append(classify_embeddings(encode_images(clip.model, batch, edits=edits).embedding, classifier))
    return torch.cat(out)


def classify_embeddings(
    embeddings: Float[Tensor, "batch d_embed"], classifier: Float[Tensor, "n_classes d_embed"]
) -> Float[Tensor, "batch n_classes"]:
    """Cosine similarities of (unnormalised) image embeddings to unit-norm class embeddings."""
    return F.normalize(embeddings.float(), dim=-1) @ classifier.to(embeddings.device).T


def class_probabilities(
    clip: LoadedClip,
    embeddings: Float[Tensor, "batch d_embed"],
    classifier: Float[Tensor, "n_classes d_embed"],
) -> Float[Tensor, "batch n_classes"]:
    """Zero-shot class probabilities: the softmax of the model's logit scale times the cosines.

    ``classifier`` holds unit-norm class embeddings (:func:`text_classifier`); with no classes the
    result has shape ``(batch, 0)``.
    """
    scale = float(clip.model.logit_scale.detach().exp())
    return (scale * classify_embeddings(embeddings, classifier)).softmax(-1)


def zero_shot_accuracy(
    clip: LoadedClip,
    images: Float[Tensor, "batch 3 height width"],
    labels: Int[Tensor, " batch"],
    classifier: Float[Tensor, "n_classes d_embed"],
    sae: Sae | None = None,
    batch_size: int = 256,
) -> float:
    """Top-1 accuracy of zero-shot classification."""
    _check_labels(images.shape[0], "images", labels)
    return _top1(zero_shot_logits(clip, images, classifier, sae, batch_size), labels)


def embedding_accuracy(
    embeddings: Float[Tensor, "batch d_embed"],
    labels: Int[Tensor, " batch"],
    classifier: Float[Tensor, "n_classes d_embed"],
) -> float:
    """Top-1 accuracy of zero-shot classification of (unnormalised) image embeddings."""
    _check_labels(embeddings.shape[0], "embeddings", labels)
    return _top1(classify_embeddings(embeddings, classifier), labels)


def _check_labels(n: int, what: str, labels: Tensor) -> None:
    if n != labels.shape[0]:
        raise ShapeMismatchError(f"{n} {what} but {labels.shape[0]} labels")


def _top1(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(-1).cpu() == labels.cpu()).float().mean())


@dataclass(frozen=True)
class SaeEvalRow:
    """One row of the SAE table: an SAE's name, its metrics and zero-shot accuracy without/with it."""

    name: str
    l0: float
    mse: float
    r2: float
    dead_fraction: float
    accuracy: float
    accuracy_with_sae: float


def format_sae_table(rows: Sequence[SaeEvalRow], dataset: str = "CIFAR-10") -> str:
    """A Markdown table in the layout of the reference study (L0, MSE, R², accuracy CLIP / CLIP+SAE)."""
    lines = [
        f"| SAE | L0 | MSE | R² | dead | {dataset} zero-shot (CLIP / CLIP+SAE) | drop |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.l0:.2f} | {r.mse:.3e} | {r.r2:.4f} | {r.dead_fraction:.3f} | "
            f"{r.accuracy:.4f} / {r.accuracy_with_sae:.4f} | {r.accuracy - r.accuracy_with_sae:+.4f} |"
        )
    return "\n".join(lines)
