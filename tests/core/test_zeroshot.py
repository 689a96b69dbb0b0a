"""Zero-shot classification with the demo model, with and without an SAE spliced in."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.models import LoadedClip
from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.core.sae import TopKConfig, build_sae
from cliplens.core.sae.train import TensorBatches, TrainConfig, train_sae
from cliplens.core.sites import encode_images
from cliplens.core.zeroshot import (
    SaeEvalRow,
    class_probabilities,
    embedding_accuracy,
    format_sae_table,
    text_classifier,
    zero_shot_accuracy,
    zero_shot_logits,
)
from cliplens.store.sample import LabelledImages, load_labelled_parquet


@pytest.fixture(scope="module")
def sample500(demo_clip: LoadedClip) -> tuple[torch.Tensor, LabelledImages]:
    sample = load_labelled_parquet(limit=500)
    return demo_clip.preprocess_images(sample.images), sample


def test_demo_model_zero_shot_accuracy(
    demo_clip: LoadedClip, sample500: tuple[torch.Tensor, LabelledImages]
) -> None:
    images, sample = sample500
    accuracy = zero_shot_accuracy(
        demo_clip, images, sample.labels, text_classifier(demo_clip, CIFAR10_CLASSES)
    )
    assert accuracy >= 0.55


def test_logits_are_cosines_to_class_embeddings(tiny_clip: LoadedClip) -> None:
    classifier = text_classifier(tiny_clip, ["cat", "dog", "ship"])
    assert torch.allclose(classifier.norm(dim=-1), torch.ones(3), atol=1e-5)
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = F.normalize(tiny_clip.model.encode_image(images), dim=-1) @ classifier.T
    assert torch.allclose(zero_shot_logits(tiny_clip, images, classifier, batch_size=3), expected, atol=1e-6)


def test_probabilities_and_accuracy_of_embeddings(tiny_clip: LoadedClip) -> None:
    classifier = text_classifier(tiny_clip, ["cat", "dog", "ship"])
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        embeddings = tiny_clip.model.encode_image(images)
        cosines = F.normalize(embeddings, dim=-1) @ classifier.T
        expected = (tiny_clip.model.logit_scale.exp() * cosines).softmax(-1)
    torch.testing.assert_close(class_probabilities(tiny_clip, embeddings, classifier), expected)
    assert class_probabilities(tiny_clip, embeddings, classifier[:0]).shape == (5, 0)
    labels = torch.tensor([0, 1, 2, 0, 1])
    accuracy = float((cosines.argmax(-1) == labels).float().mean())
    assert embedding_accuracy(embeddings, labels, classifier) == pytest.approx(accuracy)
    assert embedding_accuracy(embeddings, labels, classifier) == pytest.approx(
        zero_shot_accuracy(tiny_clip, images, labels, classifier)
    )
    with pytest.raises(ShapeMismatchError, match="5 embeddings but 2 labels"):
        embedding_accuracy(embeddings, labels[:2], classifier)


def test_sae_splice_at_final_and_resid(
    demo_clip: LoadedClip, sample500: tuple[torch.Tensor, LabelledImages]
) -> None:
    images, sample = sample500
    classifier = text_classifier(demo_clip, CIFAR10_CLASSES)
    baseline = zero_shot_accuracy(demo_clip, images, sample.labels, classifier)
    with torch.no_grad():
        acts = encode_images(demo_clip.model, images, ["final", "resid:3"])
    rows = []
    for site in ("final", "resid:3"):
        data = acts[site].float()
        sae = build_sae(TopKConfig(d_in=data.shape[1], d_sae=4 * data.shape[1], k=32, site=site))
        train_sae(
            sae, TensorBatches(data, 64), TrainConfig(epochs=8, warmup_steps=10, progress=False, device="cpu")
        )
        with_sae = zero_shot_accuracy(demo_clip, images, sample.labels, classifier, sae=sae)
        untrained = build_sae(TopKConfig(d_in=data.shape[1], d_sae=4 * data.shape[1], k=32, site=site))
        broken = zero_shot_accuracy(demo_clip, images, sample.labels, classifier, sae=untrained)
        assert with_sae > broken  # splicing really routes the forward through the SAE
        assert with_sae >= baseline - 0.15
        rows.append(SaeEvalRow(site, 32.0, 0.0, 0.9, 0.0, baseline, with_sae))
    table = format_sae_table(rows)
    assert table.count("\n") == 3 and "CLIP / CLIP+SAE" in table


def test_bad_inputs(tiny_clip: LoadedClip) -> None:
    with pytest.raises(InvalidInputError, match="class_names"):
        text_classifier(tiny_clip, [])
    classifier = text_classifier(tiny_clip, ["cat", "dog"])
    with pytest.raises(ShapeMismatchError, match="3 images but 2 labels"):
        zero_shot_accuracy(tiny_clip, torch.randn(3, 3, 32, 32), torch.tensor([0, 1]), classifier)
    with pytest.raises(InvalidInputError, match="texts must not be empty"):
        tiny_clip.encode_texts([])
