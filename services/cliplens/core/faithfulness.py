"""Deletion and insertion curves: how faithfully a method's latent ranking explains ``y``.

For each image and its target text (its class's zero-shot embedding), latents are ordered by a
method's scores for that text. Deletion zeroes the top ``n`` latents and insertion keeps only them;
either way the SAE's error term is switched off (pure reconstruction ``decode(z * keep)``), and the
score ``y`` and the zero-shot decision among the class texts are recorded. A faithful method drops
``y`` fastest under deletion and raises it fastest under insertion.

Areas under the curves use ``x = n / n_max`` in ``[0, 1]``. Score curves are normalised per method as
``(mean y(n) - mean y_empty) / (mean y_full - mean y_empty)``, with ``y_full`` the pure reconstruction
from every latent and ``y_empty`` the decoder bias alone; accuracy curves are fractions already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from cliplens.core.attribution import (
    METHODS,
    Method,
    attribute_latents,
    baseline_attribution,
    check_images,
)
from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.models import LoadedClip
from cliplens.core.sae import Sae
from cliplens.core.sites import Site, encode_images

MAX_DEFAULT_STEPS = 32


@dataclass(frozen=True)
class CurveAreas:
    """Normalised areas under one method's curves (deletion: lower is better; insertion: higher)."""

    deletion_score: float
    deletion_accuracy: float
    insertion_score: float
    insertion_accuracy: float


@dataclass(frozen=True)
class MethodCurves:
    """Per-image curves of one method at ``steps`` (the number of latents deleted or inserted)."""

    method: Method
    deletion_scores: Float[Tensor, "batch n_steps"]
    deletion_correct: Bool[Tensor, "batch n_steps"]
    insertion_scores: Float[Tensor, "batch n_steps"]
    insertion_correct: Bool[Tensor, "batch n_steps"]


@dataclass(frozen=True)
class FaithfulnessReport:
    """Curves of every method plus the method-independent end points ``y_full`` and ``y_empty``."""

    steps: Int[Tensor, " n_steps"]
    full_scores: Float[Tensor, " batch"]
    empty_scores: Float[Tensor, " batch"]
    curves: dict[str, MethodCurves]

    def normalized(self, scores: Float[Tensor, "batch n_steps"]) -> Float[Tensor, " n_steps"]:
        """A mean score curve rescaled so that ``y_empty`` maps to 0 and ``y_full`` to 1."""
        empty, full = float(self.empty_scores.mean()), float(self.full_scores.mean())
        return (scores.mean(0) - empty) / (full - empty)

    def areas(self, method: str) -> CurveAreas:
        curves = self.curves[method]
        return CurveAreas(
            deletion_score=self._area(self.normalized(curves.deletion_scores)),
            deletion_accuracy=self._area(curves.deletion_correct.float().mean(0)),
            insertion_score=self._area(self.normalized(curves.insertion_scores)),
            insertion_accuracy=self._area(curves.insertion_correct.float().mean(0)),
        )

    def _area(self, curve: Float[Tensor, " n_steps"]) -> float:
        x = self.steps.float() / max(int(self.steps[-1]), 1)
        return float(torch.trapezoid(curve, x))

    def as_dict(self) -> dict[str, object]:
        """Steps, mean curves and areas per method, as plain Python values (for JSON)."""
        return {
            "steps": self.steps.tolist(),
            "images": int(self.full_scores.shape[0]),
            "full_score": float(self.full_scores.mean()),
            "empty_score": float(self.empty_scores.mean()),
            "methods": {
                name: {
                    "areas": vars(self.areas(name)),
                    "deletion_score": c.deletion_scores.mean(0).tolist(),
                    "deletion_accuracy": c.deletion_correct.float().mean(0).tolist(),
                    "insertion_score": c.insertion_scores.mean(0).tolist(),
                    "insertion_accuracy": c.insertion_correct.float().mean(0).tolist(),
                }
                for name, c in self.curves.items()
            },
        }


def faithfulness_curves(
    clip: LoadedClip,
    sae: Sae,
    images: Float[Tensor, "batch 3 height width"],
    labels: Int[Tensor, " batch"],
    class_embeddings: Float[Tensor, "n_classes d_embed"],
    *,
    methods: Sequence[Method] = METHODS,
    steps: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> FaithfulnessReport:
    """Deletion and insertion curves of ``methods`` for each image and its class's text.

    ``steps`` are the numbers of latents to delete or insert, increasing from 0; by default every
    count up to the largest number of active latents (or 33 evenly spaced counts when that is large).
    """
    check_images(clip, images)
    n_classes = class_embeddings.shape[0]
    if labels.is_floating_point():
        raise InvalidInputError(f"labels must be integer class indices, got {labels.dtype}")
    if labels.shape != (images.shape[0],):
        raise ShapeMismatchError(
            f"expected one label per image ({images.shape[0]}), got {tuple(labels.shape)}"
        )
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < n_classes:
        raise InvalidInputError(f"labels must index the {n_classes} class embeddings")
    for method in methods:
        if method not in METHODS:
            raise InvalidInputError(
                f"unknown attribution method '{method}'; choose one of {', '.join(METHODS)}"
            )
    reference = attribute_latents(clip, sae, images, class_embeddings, batch_size=batch_size)
    z = reference.activations
    counts = _check_steps(steps, int((reference.latent_activations > 0).sum(-1).max()), sae.cfg.d_sae)
    site = Site.parse(reference.site)
    targets = labels.to(z.device)

    def evaluate(keep: Tensor) -> tuple[Tensor, Tensor]:
        logits = _reconstruction_logits(clip, sae, site, images, z, keep, reference.texts, batch_size)
        return logits.gather(1, targets[:, None])[:, 0], logits.argmax(-1) == targets

    ones = torch.ones(z.shape[0], sae.cfg.d_sae, device=z.device)
    full_scores, _ = evaluate(ones)
    empty_scores, _ = evaluate(torch.zeros_like(ones))
    curves: dict[str, MethodCurves] = {}
    for method in methods:
        scores = baseline_attribution(clip, sae, reference, method, seed).attributions
        order = scores[torch.arange(len(targets)), targets].argsort(dim=-1, descending=True, stable=True)
        deleted, inserted = [], []
        for n in counts:
            top = torch.zeros_like(ones).scatter(1, order[:, :n], 1.0)
            deleted.append(evaluate(1.0 - top))
            inserted.append(evaluate(top))
        curves[method] = MethodCurves(
            method,
            torch.stack([s for s, _ in deleted], 1),
            torch.stack([c for _, c in deleted], 1),
            torch.stack([s for s, _ in inserted], 1),
            torch.stack([c for _, c in inserted], 1),
        )
    return FaithfulnessReport(torch.tensor(counts), full_scores, empty_scores, curves)


def _check_steps(steps: Sequence[int] | None, max_active: int, d_sae: int) -> list[int]:
    if steps is None:
        if max_active <= MAX_DEFAULT_STEPS:
            return list(range(max_active + 1))
        return torch.linspace(0, max_active, MAX_DEFAULT_STEPS + 1).round().long().unique().tolist()
    counts = [int(n) for n in steps]
    if not counts or counts != sorted(set(counts)) or counts[0] < 0 or counts[-1] > d_sae:
        raise InvalidInputError(f"steps must increase strictly within [0, d_sae={d_sae}], got {counts}")
    return counts


@torch.no_grad()
def _reconstruction_logits(
    clip: LoadedClip,
    sae: Sae,
    site: Site,
    images: Tensor,
    z: Float[Tensor, "batch *patches d_sae"],
    keep: Float[Tensor, "batch d_sae"],
    texts: Float[Tensor, "n_texts d_embed"],
    batch_size: int,
) -> Float[Tensor, "batch n_texts"]:
    """Cosines to ``texts`` of the embeddings when the site holds ``decode(z * keep)`` (no error term)."""
    kept = z * (keep[:, None] if z.ndim == 3 else keep)
    if site.kind == "final":
        embedding = sae.decode(kept)
    else:
        parts = []
        for start in range(0, images.shape[0], batch_size):
            chunk = kept[start : start + batch_size]

            def reconstruct(h: Tensor, chunk: Tensor = chunk) -> Tensor:
                return sae.decode(chunk).to(h.dtype)

            batch = images[start : start + batch_size].to(clip.device, clip.dtype)
            parts.append(encode_images(clip.model, batch, edits={site: reconstruct}).embedding)
        embedding = torch.cat(parts)
    return F.normalize(embedding.float(), dim=-1) @ texts.T


def faithfulness_table(report: FaithfulnessReport) -> str:
    """A Markdown table of the normalised areas of every method (↓ lower is better, ↑ higher)."""
    lines = [
        "| method | deletion AUC (score) ↓ | deletion AUC (accuracy) ↓ | "
        "insertion AUC (score) ↑ | insertion AUC (accuracy) ↑ |",
        "|---|---|---|---|---|",
    ]
    for method in report.curves:
        a = report.areas(method)
        lines.append(
            f"| {method} | {a.deletion_score:.4f} | {a.deletion_accuracy:.4f} | "
            f"{a.insertion_score:.4f} | {a.insertion_accuracy:.4f} |"
        )
    return "\n".join(lines)
