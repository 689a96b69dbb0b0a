"""Failure-mode probes on the demo model, their image edits, and the ``cliplens probe`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image, ImageChops

from cliplens.cli import main
from cliplens.core.errors import InvalidInputError
from cliplens.core.models import LoadedClip
from cliplens.core.naming import decoder_alignment, embed_texts, embed_vocabulary
from cliplens.core.probe_images import GREY, paste_centre, render_text
from cliplens.core.probe_prompts import PolysemousWord, Sense
from cliplens.core.probes import (
    ProbeContext,
    check_labelled,
    spurious_probe,
    typography_probe,
    word_probes,
)
from cliplens.core.prompts import CIFAR10_CLASSES, PHOTO_TEMPLATES
from cliplens.core.sae import TopKConfig, build_sae
from cliplens.core.sae.train import TensorBatches, TrainConfig, train_sae
from cliplens.core.sites import encode_images
from cliplens.store.sample import LabelledImages, load_labelled_parquet


@pytest.fixture(scope="module")
def sample() -> LabelledImages:
    return load_labelled_parquet(limit=160)


@pytest.fixture(scope="module")
def context(demo_clip: LoadedClip, sample: LabelledImages) -> ProbeContext:
    with torch.no_grad():
        embeddings = encode_images(demo_clip.model, demo_clip.preprocess_images(sample.images)).embedding
    sae = build_sae(TopKConfig(d_in=128, d_sae=256, k=8, site="final"))
    train_sae(
        sae,
        TensorBatches(embeddings, 64),
        TrainConfig(epochs=3, warmup_steps=5, device="cpu", progress=False),
    )
    vocabulary = embed_vocabulary(demo_clip, ["text", "cat", "truck", "sky", "grass"])
    names = [vocabulary.labels[int(i)] for i in decoder_alignment(demo_clip, sae, vocabulary).argmax(-1)]
    classifier = embed_texts(demo_clip, CIFAR10_CLASSES, PHOTO_TEMPLATES)
    return ProbeContext(demo_clip, sae, classifier, names, top_latents=3)


def test_render_text_writes_on_a_copy_of_the_same_size(sample: LabelledImages) -> None:
    image = sample.images[0]
    written, boxed = render_text(image, "airplane"), render_text(image, "airplane", box_only=True)
    assert written.size == boxed.size == image.size
    assert ImageChops.difference(written, image).getbbox() is not None
    assert ImageChops.difference(written, boxed).getbbox() is not None  # the words themselves show


def test_paste_centre_keeps_the_centre_and_takes_the_border() -> None:
    red, blue = Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))
    composite = paste_centre(red, blue, fraction=0.5)
    assert composite.getpixel((16, 16)) == (255, 0, 0) and composite.getpixel((1, 1)) == (0, 0, 255)
    assert paste_centre(red, None).getpixel((0, 31)) == GREY
    with pytest.raises(InvalidInputError, match="centre fraction must be in"):
        paste_centre(red, blue, fraction=1.5)


def test_typography_flips_predictions_to_the_written_class(
    context: ProbeContext, sample: LabelledImages
) -> None:
    result = typography_probe(context, sample.images, sample.labels, CIFAR10_CLASSES)
    assert result.images == 160
    assert result.flip_rate > 0
    assert result.accuracy_text < result.accuracy_clean
    assert len(result.text_latents) == len(result.rising) == 3
    assert all(-1.0 <= share <= 1.0 for share in (result.text_share_clean, result.text_share_text))


def test_spurious_backgrounds_cost_accuracy(context: ProbeContext, sample: LabelledImages) -> None:
    images, labels = sample.images[:32], sample.labels[:32]
    result = spurious_probe(context, images, labels, CIFAR10_CLASSES)
    assert result.composites == 64
    assert result.accuracy_composite < result.accuracy_clean
    assert 0.0 <= result.background_rate <= 1.0 - result.accuracy_composite


def test_word_probes_score_the_senses_the_data_shows(demo_clip: LoadedClip, sample: LabelledImages) -> None:
    polysemy, compounds = word_probes(demo_clip, sample.images, sample.labels, CIFAR10_CLASSES)
    jaguar = next(w for w in polysemy if w.word == "jaguar")
    assert [s.image_class for s in jaguar.senses] == ["cat", "automobile"]
    assert all(w.word not in ("bat", "mouse") for w in polysemy)  # no CIFAR-10 class shows them
    kite = next(w for w in polysemy if w.word == "kite")
    assert [s.image_class for s in kite.senses] == ["bird"]  # the toy sense only competes as a gloss
    hot_dog = next(c for c in compounds if c.compound == "hot dog")
    assert hot_dog.image_class == "dog" and not hot_dog.denotes
    assert hot_dog.margin == pytest.approx(hot_dog.compound_score - max(hot_dog.part_scores.values()))


def test_bad_probe_inputs_are_named(sample: LabelledImages) -> None:
    with pytest.raises(InvalidInputError, match="same non-zero number of images and labels"):
        check_labelled(sample.images[:3], sample.labels[:2], CIFAR10_CLASSES)
    with pytest.raises(InvalidInputError, match="at least 2 classes"):
        check_labelled(sample.images[:2], torch.zeros(2, dtype=torch.long), ["cat"])
    with pytest.raises(InvalidInputError, match="labels must lie in \\[0, 2\\)"):
        check_labelled(sample.images[:3], torch.tensor([0, 1, 5]), ["cat", "dog"])
    with pytest.raises(InvalidInputError, match="'jaguar' needs at least 2 senses"):
        PolysemousWord("jaguar", (Sense("jaguar, the big cat"),))


def test_probe_command_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.md"
    assert (
        main(["probe", "--limit", "24", "--sae-epochs", "2", "--vocabulary", "cifar100", "--out", str(out)])
        == 0
    )
    report = out.read_text()
    assert report.startswith("# Failure-mode probes: demo")
    for section in ("## Typography", "## Polysemous words", "## Compound nouns", "## Spurious correlation"):
        assert section in report
    assert "| jaguar | jaguar, the big cat (cat," in report
    assert report in capsys.readouterr().out


def test_probe_command_names_a_missing_class_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--limit", "4", "--classes", str(tmp_path / "none.txt")]) == 2
    error = capsys.readouterr().err
    assert "class-names file" in error and "none.txt not found" in error
