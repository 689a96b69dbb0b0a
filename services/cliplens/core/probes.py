"""Failure-mode probes: where image-text alignment breaks, and which SAE latents are responsible.

- Typography: the name of another class written on an image (plus a blank-box control); the flip
  rate to the written class and the attribution share of text-like latents.
- Polysemy and compound nouns: how a word with several senses, or a compound and its parts, score
  against images that show each sense or the compound's class.
- Spurious correlation: an image's centre pasted onto another class's background (both ways); the
  accuracy lost and how often the prediction follows the background.

Latents "responsible" for a change are those whose attribution (``attribute_latents``) to the
offending class rises most from the clean to the edited images; each is named by the vocabulary
label its decoder direction aligns with best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from PIL import Image
from torch import Tensor

from cliplens.core.attribution import attribute_latents, logit_lens
from cliplens.core.errors import InvalidInputError
from cliplens.core.models import LoadedClip
from cliplens.core.naming import Vocabulary, decoder_alignment, embed_texts
from cliplens.core.probe_images import paste_centre, render_text
from cliplens.core.probe_prompts import (
    COMPOUND_NOUNS,
    POLYSEMOUS_WORDS,
    PROMPT_TEMPLATE,
    TYPOGRAPHY_WORDS,
    CompoundNoun,
    PolysemousWord,
)
from cliplens.core.prompts import PHOTO_TEMPLATES
from cliplens.core.sae import Sae
from cliplens.core.zeroshot import check_sae_fits, zero_shot_logits

ATTRIBUTION_CHUNK = 64


@dataclass(frozen=True)
class NamedLatent:
    """A latent, a score (what it means depends on the list it is in) and its best decoder label."""

    latent: int
    score: float
    label: str


@dataclass(frozen=True)
class TypographyResult:
    """``flip_rate``: of the images not already predicted as the written class, the fraction that
    are after the text is written; ``box_flip_rate`` the same for a blank box of the same size.
    ``text_share_*``: the text-like latents' share of the total absolute latent attribution to the
    written class, on clean and on written-on images."""

    images: int
    accuracy_clean: float
    accuracy_text: float
    accuracy_box: float
    flip_rate: float
    box_flip_rate: float
    text_latents: list[NamedLatent]
    text_share_clean: float
    text_share_text: float
    rising: list[NamedLatent]


@dataclass(frozen=True)
class SenseResult:
    """Images of ``image_class`` (showing one sense): their mean cosine with the bare word, and the
    mean margin of this sense's gloss over the best other gloss (negative: the senses are confused)."""

    gloss: str
    image_class: str
    images: int
    word_score: float
    sense_margin: float


@dataclass(frozen=True)
class PolysemyResult:
    word: str
    senses: list[SenseResult]


@dataclass(frozen=True)
class CompoundResult:
    """Images of ``image_class``: mean cosines with the compound and each part, and
    ``margin = compound - best part`` (expected > 0 when the compound ``denotes`` the class, < 0 if not)."""

    compound: str
    image_class: str
    denotes: bool
    images: int
    compound_score: float
    part_scores: dict[str, float]
    margin: float


@dataclass(frozen=True)
class SpuriousResult:
    """Composites of one image's centre on another class's background. ``accuracy_centre`` is the
    centre on a grey border (the context removed, nothing misleading added); ``background_rate`` the
    fraction of composites predicted as the background's class."""

    composites: int
    accuracy_clean: float
    accuracy_centre: float
    accuracy_composite: float
    background_rate: float
    rising: list[NamedLatent]


@dataclass(frozen=True)
class ProbeReport:
    model: str
    sae: str
    images: int
    classes: int
    typography: TypographyResult
    spurious: SpuriousResult
    polysemy: list[PolysemyResult] = field(default_factory=list)
    compounds: list[CompoundResult] = field(default_factory=list)


@dataclass(frozen=True)
class ProbeContext:
    """What every probe needs: the model, SAE, class text embeddings and latent names."""

    clip: LoadedClip
    sae: Sae
    classifier: Float[Tensor, "n_classes d_embed"]
    latent_labels: list[str]
    top_latents: int = 5

    def predict(self, images: Sequence[Image.Image]) -> Int[Tensor, " batch"]:
        """Zero-shot class predictions."""
        pixels = self.clip.preprocess_images(list(images))
        return zero_shot_logits(self.clip, pixels, self.classifier).argmax(-1).cpu()

    def target_attribution(
        self, images: Sequence[Image.Image], targets: Int[Tensor, " batch"]
    ) -> Float[Tensor, "batch d_sae"]:
        """Each image's latent attributions to its own target class."""
        rows = []
        for start in range(0, len(images), ATTRIBUTION_CHUNK):
            chunk = targets[start : start + ATTRIBUTION_CHUNK]
            classes, column = chunk.unique(return_inverse=True)
            pixels = self.clip.preprocess_images(list(images[start : start + ATTRIBUTION_CHUNK]))
            scores = attribute_latents(self.clip, self.sae, pixels, self.classifier[classes]).attributions
            rows.append(scores[torch.arange(len(chunk)), column.to(scores.device)].cpu())
        return torch.cat(rows)

    def name(self, latents: Tensor, scores: Tensor) -> list[NamedLatent]:
        return [
            NamedLatent(int(k), float(s), self.latent_labels[int(k)])
            for k, s in zip(latents, scores, strict=True)
        ]

    def rising(
        self,
        before: Float[Tensor, "batch d_sae"],
        after: Float[Tensor, "batch d_sae"],
    ) -> list[NamedLatent]:
        """The latents whose mean attribution rises most from ``before`` to ``after``."""
        values, latents = (after - before).mean(0).topk(min(self.top_latents, before.shape[-1]))
        return self.name(latents, values)


def typography_probe(
    ctx: ProbeContext,
    images: Sequence[Image.Image],
    labels: Int[Tensor, " batch"],
    class_names: Sequence[str],
) -> TypographyResult:
    """Write another class's name on every image (image ``i`` of class ``c`` gets class
    ``(c + 1 + i mod (C-1)) mod C``) and compare with the clean and blank-box images."""
    labels = check_labelled(images, labels, class_names)
    n_classes = len(class_names)
    targets = (labels + 1 + torch.arange(len(labels)) % (n_classes - 1)) % n_classes
    written = [render_text(im, class_names[int(t)]) for im, t in zip(images, targets, strict=True)]
    boxed = [
        render_text(im, class_names[int(t)], box_only=True) for im, t in zip(images, targets, strict=True)
    ]
    clean, text, box = ctx.predict(images), ctx.predict(written), ctx.predict(boxed)
    eligible = clean != targets

    typography = embed_texts(ctx.clip, TYPOGRAPHY_WORDS, (PROMPT_TEMPLATE,))
    alignment = logit_lens(ctx.clip, ctx.sae, typography).mean(0).cpu()
    values, text_latents = alignment.topk(min(ctx.top_latents, alignment.shape[0]))
    before, after = ctx.target_attribution(images, targets), ctx.target_attribution(written, targets)
    return TypographyResult(
        images=len(labels),
        accuracy_clean=_rate(clean == labels),
        accuracy_text=_rate(text == labels),
        accuracy_box=_rate(box == labels),
        flip_rate=_rate((text == targets)[eligible]),
        box_flip_rate=_rate((box == targets)[eligible]),
        text_latents=ctx.name(text_latents, values),
        text_share_clean=_share(before, text_latents),
        text_share_text=_share(after, text_latents),
        rising=ctx.rising(before, after),
    )


def spurious_probe(
    ctx: ProbeContext,
    images: Sequence[Image.Image],
    labels: Int[Tensor, " batch"],
    class_names: Sequence[str],
    centre: float = 0.5,
) -> SpuriousResult:
    """Pair each image with one of another class; paste each one's centre on the other's background."""
    labels = check_labelled(images, labels, class_names)
    partners = _partners(labels)
    objects = torch.cat([torch.arange(len(labels)), partners])
    backgrounds = torch.cat([partners, torch.arange(len(labels))])
    composites = [
        paste_centre(images[int(o)], images[int(b)], centre)
        for o, b in zip(objects, backgrounds, strict=True)
    ]
    predicted = ctx.predict(composites)
    centre_only = ctx.predict([paste_centre(im, None, centre) for im in images])
    object_images = [images[int(o)] for o in objects]
    before = ctx.target_attribution(object_images, labels[backgrounds])
    after = ctx.target_attribution(composites, labels[backgrounds])
    return SpuriousResult(
        composites=len(composites),
        accuracy_clean=_rate(ctx.predict(images) == labels),
        accuracy_centre=_rate(centre_only == labels),
        accuracy_composite=_rate(predicted == labels[objects]),
        background_rate=_rate(predicted == labels[backgrounds]),
        rising=ctx.rising(before, after),
    )


@torch.no_grad()
def word_probes(
    clip: LoadedClip,
    images: Sequence[Image.Image],
    labels: Int[Tensor, " batch"],
    class_names: Sequence[str],
    words: Sequence[PolysemousWord] = POLYSEMOUS_WORDS,
    compounds: Sequence[CompoundNoun] = COMPOUND_NOUNS,
) -> tuple[list[PolysemyResult], list[CompoundResult]]:
    """Score polysemous words (bare and per sense) and compound nouns (whole and parts) against the
    images of the classes that show them; entries no class shows are left out."""
    labels = check_labelled(images, labels, class_names)
    prompts = list(
        dict.fromkeys(
            [w.word for w in words]
            + [s.gloss for w in words for s in w.senses]
            + [c.compound for c in compounds]
            + [p for c in compounds for p in c.parts]
        )
    )
    column = {prompt: i for i, prompt in enumerate(prompts)}
    pixels = clip.preprocess_images(list(images))
    scores = zero_shot_logits(clip, pixels, embed_texts(clip, prompts, (PROMPT_TEMPLATE,))).cpu()

    def mean_score(rows: Tensor, prompt: str) -> float:
        return float(rows[:, column[prompt]].mean())

    polysemy = []
    for word in words:
        senses = []
        for sense in word.senses:
            found = _shown_class(sense.classes, class_names, labels)
            if found is None:
                continue
            rows = scores[labels == found]
            others = [column[s.gloss] for s in word.senses if s is not sense]
            margin = rows[:, column[sense.gloss]] - rows[:, others].amax(-1)
            senses.append(
                SenseResult(
                    sense.gloss,
                    class_names[found],
                    len(rows),
                    mean_score(rows, word.word),
                    float(margin.mean()),
                )
            )
        if senses:
            polysemy.append(PolysemyResult(word.word, senses))

    results = []
    for compound in compounds:
        found = _shown_class(compound.classes, class_names, labels)
        if found is None:
            continue
        rows = scores[labels == found]
        parts = {part: mean_score(rows, part) for part in compound.parts}
        whole = mean_score(rows, compound.compound)
        results.append(
            CompoundResult(
                compound.compound,
                class_names[found],
                compound.denotes,
                len(rows),
                whole,
                parts,
                whole - max(parts.values()),
            )
        )
    return polysemy, results


def run_probes(
    clip: LoadedClip,
    sae: Sae,
    images: Sequence[Image.Image],
    labels: Int[Tensor, " batch"],
    class_names: Sequence[str],
    vocabulary: Vocabulary,
    *,
    top_latents: int = 5,
) -> ProbeReport:
    """Run every probe on labelled ``images`` of ``class_names``; ``vocabulary`` names the latents."""
    site = check_sae_fits(sae, clip)
    labels = check_labelled(images, labels, class_names)
    latent_labels = [vocabulary.labels[int(i)] for i in decoder_alignment(clip, sae, vocabulary).argmax(-1)]
    ctx = ProbeContext(clip, sae, embed_texts(clip, class_names, PHOTO_TEMPLATES), latent_labels, top_latents)
    polysemy, compounds = word_probes(clip, images, labels, class_names)
    return ProbeReport(
        model=clip.spec.id,
        sae=f"{sae.cfg.arch} d_sae={sae.cfg.d_sae} at '{site}'",
        images=len(labels),
        classes=len(class_names),
        typography=typography_probe(ctx, images, labels, class_names),
        spurious=spurious_probe(ctx, images, labels, class_names),
        polysemy=polysemy,
        compounds=compounds,
    )


def format_report(report: ProbeReport) -> str:
    """The report as Markdown: one section per probe."""
    t, s = report.typography, report.spurious
    lines = [
        f"# Failure-mode probes: {report.model}",
        "",
        f"{report.images} images of {report.classes} classes; SAE {report.sae}.",
        "",
        "## Typography (another class's name written on the image)",
        "",
        "| images | accuracy clean / text / blank box | flip to written class (text / blank box) | text-latent attribution share (clean -> text) |",
        "|---|---|---|---|",
        f"| {t.images} | {t.accuracy_clean:.3f} / {t.accuracy_text:.3f} / {t.accuracy_box:.3f} | "
        f"{t.flip_rate:.3f} / {t.box_flip_rate:.3f} | {t.text_share_clean:+.3f} -> {t.text_share_text:+.3f} |",
        "",
        f"Text-like latents (decoder alignment with {', '.join(repr(w) for w in TYPOGRAPHY_WORDS)}): "
        + _latent_list(t.text_latents),
        "",
        "Latents whose attribution to the written class rises most: " + _latent_list(t.rising),
        "",
        "## Polysemous words",
        "",
        "| word | sense (image class, images) | cos(image, word) | margin of own sense gloss |",
        "|---|---|---|---|",
    ]
    for word in report.polysemy:
        for sense in word.senses:
            lines.append(
                f"| {word.word} | {sense.gloss} ({sense.image_class}, {sense.images}) | "
                f"{sense.word_score:.3f} | {sense.sense_margin:+.3f} |"
            )
    lines += [
        "",
        "## Compound nouns",
        "",
        "| compound | image class (images) | names the class | cos(compound) | cos(parts) | compound - best part |",
        "|---|---|---|---|---|---|",
    ]
    for c in report.compounds:
        parts = ", ".join(f"{p} {v:.3f}" for p, v in c.part_scores.items())
        lines.append(
            f"| {c.compound} | {c.image_class} ({c.images}) | {'yes' if c.denotes else 'no'} | "
            f"{c.compound_score:.3f} | {parts} | {c.margin:+.3f} |"
        )
    lines += [
        "",
        "## Spurious correlation (centre of one image on another class's background)",
        "",
        "| composites | accuracy clean / centre on grey / composite | prediction follows background |",
        "|---|---|---|",
        f"| {s.composites} | {s.accuracy_clean:.3f} / {s.accuracy_centre:.3f} / {s.accuracy_composite:.3f} | "
        f"{s.background_rate:.3f} |",
        "",
        "Latents whose attribution to the background's class rises most: " + _latent_list(s.rising),
    ]
    return "\n".join(lines) + "\n"


def check_labelled(
    images: Sequence[Image.Image], labels: Int[Tensor, " batch"], class_names: Sequence[str]
) -> Int[Tensor, " batch"]:
    """``labels`` on the CPU; raises unless images and labels pair up and span at least 2 classes."""
    if len(images) != len(labels) or not images:
        raise InvalidInputError(
            f"need the same non-zero number of images and labels, got {len(images)} and {len(labels)}"
        )
    if len(class_names) < 2:
        raise InvalidInputError(f"the probes need at least 2 classes, got {len(class_names)}")
    if int(labels.min()) < 0 or int(labels.max()) >= len(class_names):
        raise InvalidInputError(
            f"labels must lie in [0, {len(class_names)}), got {int(labels.min())}..{int(labels.max())}"
        )
    return labels.cpu()


def _latent_list(latents: Sequence[NamedLatent]) -> str:
    return ", ".join(f"#{n.latent} '{n.label}' ({n.score:+.3g})" for n in latents) or "none"


def _rate(hits: Tensor) -> float:
    return float(hits.float().mean()) if hits.numel() else 0.0


def _share(attributions: Float[Tensor, "batch d_sae"], latents: Tensor) -> float:
    """Mean over images of the chosen latents' summed attribution over the total absolute attribution."""
    total = attributions.abs().sum(-1).clamp_min(1e-12)
    return float((attributions[:, latents].sum(-1) / total).mean())


def _shown_class(candidates: Sequence[str], class_names: Sequence[str], labels: Tensor) -> int | None:
    """Index of the first candidate among ``class_names`` (case-insensitive) that has images."""
    lowered = {name.lower(): i for i, name in enumerate(class_names)}
    present = set(labels.unique().tolist())
    return next((lowered[c.lower()] for c in candidates if lowered.get(c.lower()) in present), None)


def _partners(labels: Int[Tensor, " batch"], seed: int = 0) -> Int[Tensor, " batch"]:
    """For each image, a seeded pick among the images of a different class."""
    if labels.unique().numel() < 2:
        raise InvalidInputError("the spurious-correlation probe needs images of at least 2 classes")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    partners = []
    for i in range(len(labels)):
        offset = 0
        while labels[order[(i + offset) % len(labels)]] == labels[i]:
            offset += 1
        partners.append(int(order[(i + offset) % len(labels)]))
    return torch.tensor(partners)
