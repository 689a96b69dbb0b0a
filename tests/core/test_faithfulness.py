"""Deletion and insertion curves on the demo model with an SAE trained here, and on a tiny model."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from cliplens.core.attribution import METHODS
from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.faithfulness import FaithfulnessReport, faithfulness_curves, faithfulness_table
from cliplens.core.models import LoadedClip
from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.core.sae import Sae, TopKConfig, build_sae
from cliplens.core.sae.train import TensorBatches, TrainConfig, train_sae
from cliplens.core.sites import encode_images
from cliplens.core.zeroshot import text_classifier, zero_shot_logits
from cliplens.store.sample import load_labelled_parquet

TRAIN, TEST = 300, 100


@pytest.fixture(scope="module")
def demo_setup(demo_clip: LoadedClip) -> tuple[Sae, Tensor, Tensor, Tensor]:
    """A TopK SAE trained on the demo model's ``final`` embeddings of shipped-sample images, plus held-out
    images, their labels and the class embeddings."""
    sample = load_labelled_parquet(limit=TRAIN + TEST)
    images = demo_clip.preprocess_images(sample.images)
    with torch.no_grad():
        embeddings = encode_images(demo_clip.model, images[:TRAIN]).embedding.float()
    sae = build_sae(TopKConfig(d_in=demo_clip.embed_dim, d_sae=512, k=16, site="final", model_id="demo"))
    train_sae(sae, TensorBatches(embeddings, 64), TrainConfig(epochs=6, warmup_steps=5, progress=False))
    return sae, images[TRAIN:], sample.labels[TRAIN:], text_classifier(demo_clip, CIFAR10_CLASSES)


@pytest.fixture(scope="module")
def demo_report(demo_clip: LoadedClip, demo_setup: tuple[Sae, Tensor, Tensor, Tensor]) -> FaithfulnessReport:
    sae, images, labels, classes = demo_setup
    return faithfulness_curves(demo_clip, sae, images, labels, classes)


def test_attribution_deletion_drops_faster_than_random(demo_report: FaithfulnessReport) -> None:
    attribution, random = demo_report.areas("attribution"), demo_report.areas("random")
    assert attribution.deletion_score < random.deletion_score - 0.05
    assert attribution.insertion_score > random.insertion_score + 0.05
    assert attribution.deletion_accuracy <= random.deletion_accuracy
    first_deletions = demo_report.curves["attribution"].deletion_scores[:, 1:4].mean()
    assert first_deletions < demo_report.curves["random"].deletion_scores[:, 1:4].mean()


def test_curves_start_and_end_at_the_pure_reconstruction_and_the_bias(
    demo_report: FaithfulnessReport,
) -> None:
    assert demo_report.steps.tolist() == list(range(17))
    for curves in demo_report.curves.values():
        torch.testing.assert_close(curves.deletion_scores[:, 0], demo_report.full_scores)
        torch.testing.assert_close(curves.insertion_scores[:, 0], demo_report.empty_scores)
    # Energy and random rank every active latent (k = 16) first, so step 16 reaches the other end;
    # signed methods rank negative contributions after the inactive latents, so they need not.
    for method in ("energy", "random"):
        curves = demo_report.curves[method]
        torch.testing.assert_close(curves.deletion_scores[:, -1], demo_report.empty_scores)
        torch.testing.assert_close(curves.insertion_scores[:, -1], demo_report.full_scores)
    normalized = demo_report.normalized(demo_report.curves["random"].deletion_scores)
    assert normalized[0] == pytest.approx(1.0) and normalized[-1] == pytest.approx(0.0, abs=1e-5)


def test_full_reconstruction_matches_the_spliced_zero_shot_logits(
    demo_clip: LoadedClip, demo_setup: tuple[Sae, Tensor, Tensor, Tensor], demo_report: FaithfulnessReport
) -> None:
    sae, images, labels, classes = demo_setup
    logits = zero_shot_logits(demo_clip, images, classes, sae=sae)
    target = logits.gather(1, labels[:, None])[:, 0]
    torch.testing.assert_close(demo_report.full_scores, target, atol=1e-5, rtol=1e-4)
    correct = demo_report.curves["attribution"].deletion_correct[:, 0]
    assert torch.equal(correct, logits.argmax(-1) == labels)


def test_table_and_dict_cover_every_method(demo_report: FaithfulnessReport) -> None:
    table = faithfulness_table(demo_report)
    assert table.count("\n") == len(METHODS) + 1
    for method in METHODS:
        assert f"| {method} |" in table
    document = demo_report.as_dict()
    assert document["images"] == TEST
    assert set(document["methods"]) == set(METHODS)  # type: ignore[call-overload]


def test_residual_patch_site_curves_reach_both_ends(tiny_clip: LoadedClip) -> None:
    torch.manual_seed(0)
    sae = build_sae(TopKConfig(d_in=64, d_sae=12, k=1, site="resid:0:patches")).eval()
    images = torch.randn(4, 3, 32, 32)
    classes = torch.randn(3, 32)
    labels = torch.tensor([0, 1, 2, 0])
    report = faithfulness_curves(tiny_clip, sae, images, labels, classes, methods=("attribution", "energy"))
    assert report.steps[-1] <= 12 and len(report.steps) > 2
    logits = zero_shot_logits(tiny_clip, images, torch.nn.functional.normalize(classes, dim=-1), sae=sae)
    torch.testing.assert_close(report.full_scores, logits.gather(1, labels[:, None])[:, 0])
    energy = report.curves["energy"]
    torch.testing.assert_close(energy.deletion_scores[:, -1], report.empty_scores)
    torch.testing.assert_close(energy.insertion_scores[:, -1], report.full_scores)


def test_bad_inputs_raise_clear_errors(
    demo_clip: LoadedClip, demo_setup: tuple[Sae, Tensor, Tensor, Tensor]
) -> None:
    sae, images, labels, classes = demo_setup
    few = images[:4]
    with pytest.raises(ShapeMismatchError, match="one label per image"):
        faithfulness_curves(demo_clip, sae, few, labels, classes)
    with pytest.raises(InvalidInputError, match="labels must index the 10 class embeddings"):
        faithfulness_curves(demo_clip, sae, few, torch.tensor([0, 1, 2, 10]), classes)
    with pytest.raises(InvalidInputError, match="integer class indices"):
        faithfulness_curves(demo_clip, sae, few, labels[:4].float(), classes)
    with pytest.raises(InvalidInputError, match="steps must increase strictly"):
        faithfulness_curves(demo_clip, sae, few, labels[:4], classes, steps=[0, 4, 2])
    with pytest.raises(InvalidInputError, match="unknown attribution method 'lime'"):
        faithfulness_curves(demo_clip, sae, few, labels[:4], classes, methods=("lime",))  # type: ignore[arg-type]
