"""Zero-shot segmentation heatmaps and the synthetic pasted-object benchmark."""

from __future__ import annotations

import pytest
import torch

from cliplens.core.decomposition import (
    PastedObjects,
    class_heatmaps,
    decompose,
    direct_effects,
    evaluate_segmentation,
    heatmap_masks,
    paste_objects,
    score_heatmaps,
)
from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.models import LoadedClip
from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.core.zeroshot import text_classifier
from cliplens.store.sample import load_labelled_parquet


@pytest.fixture(scope="module")
def pool(demo_clip: LoadedClip) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_labelled_parquet(limit=200)
    return demo_clip.preprocess_images(data.images), data.labels


def test_paste_objects_is_deterministic_and_places_the_target(pool) -> None:
    images, labels = pool
    first = paste_objects(images, labels, 6, object_size=16, seed=3)
    again = paste_objects(images, labels, 6, object_size=16, seed=3)
    other = paste_objects(images, labels, 6, object_size=16, seed=4)
    assert torch.equal(first.canvases, again.canvases) and torch.equal(first.boxes, again.boxes)
    assert not torch.equal(first.canvases, other.canvases)
    assert first.canvases.shape == (6, 3, 32, 32)
    masks = first.box_masks()
    assert masks.sum((1, 2)).tolist() == [256] * 6
    top, left = first.boxes[0, :2].tolist()
    assert masks[0, top, left] and masks[0, top + 15, left + 15] and not masks[0, top + 16, left]
    assert set(first.labels.tolist()) <= set(labels.tolist())


def test_tiles_come_from_other_classes() -> None:
    labels = torch.tensor([0, 1, 2])
    images = torch.stack([torch.full((3, 32, 32), float(c)) for c in range(3)])
    objects = paste_objects(images, labels, 20, object_size=8, seed=0)
    outside = ~objects.box_masks()[:, None].expand_as(objects.canvases)
    for canvas, label, keep in zip(objects.canvases, objects.labels, outside, strict=True):
        assert not (canvas[keep] == float(label)).any()


def test_heatmaps_are_patch_scores_upsampled(demo_clip: LoadedClip, pool) -> None:
    images = pool[0][:2]
    classifier = text_classifier(demo_clip, CIFAR10_CLASSES)
    heatmaps = class_heatmaps(demo_clip.model, images, classifier)
    assert heatmaps.shape == (2, 10, 32, 32)
    contrast = classifier - (classifier.sum(0, keepdim=True) - classifier) / 9
    patches = direct_effects(decompose(demo_clip.model, images), contrast).per_patch()
    grid = patches.transpose(1, 2).reshape(2, 10, 8, 8)  # row-major patch order
    expected = torch.nn.functional.interpolate(grid, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(heatmaps, expected, atol=1e-5, rtol=1e-4)
    masks = heatmap_masks(heatmaps)
    assert masks.any() and not masks.all()


def test_pointing_beats_chance_with_demo_model(demo_clip: LoadedClip, pool) -> None:
    images, labels = pool
    objects = paste_objects(images, labels, 96, object_size=16, seed=0)
    scores = evaluate_segmentation(
        demo_clip.model, objects, text_classifier(demo_clip, CIFAR10_CLASSES), batch_size=48
    )
    assert scores.chance_rate == pytest.approx(0.25)
    assert scores.pointing_accuracy > 1.5 * scores.chance_rate
    assert scores.mean_iou > 0.2


def test_score_heatmaps_on_known_maps() -> None:
    boxes = torch.zeros(2, 4, 4, dtype=torch.bool)
    boxes[:, :2, :2] = True
    heatmaps = torch.zeros(2, 4, 4)
    heatmaps[0, :2, :2] = 1.0  # exactly the box
    heatmaps[1, 3, 3] = 1.0  # one pixel outside it
    scores = score_heatmaps(heatmaps, boxes)
    assert scores.pointing_accuracy == 0.5
    assert scores.mean_iou == pytest.approx((1.0 + 0.0) / 2)
    assert scores.chance_rate == 0.25


def test_bad_segmentation_inputs_are_rejected(demo_clip: LoadedClip, pool) -> None:
    images, labels = pool
    with pytest.raises(InvalidInputError, match="at least two candidate"):
        class_heatmaps(demo_clip.model, images[:1], torch.randn(1, 128))
    with pytest.raises(ShapeMismatchError, match="must both be"):
        score_heatmaps(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5, dtype=torch.bool))
    with pytest.raises(InvalidInputError, match="object_size must be between 1 and the image size 32"):
        paste_objects(images, labels, 2, object_size=40)
    with pytest.raises(InvalidInputError, match="tiles_per_side must divide"):
        paste_objects(images, labels, 2, object_size=8, tiles_per_side=3)
    with pytest.raises(InvalidInputError, match="at least two classes"):
        paste_objects(images[:4], torch.zeros(4, dtype=torch.int64), 2, object_size=8)
    with pytest.raises(ShapeMismatchError, match="must be square"):
        paste_objects(images[:, :, :, :16], labels, 2, object_size=8)
    assert isinstance(paste_objects(images, labels, 1, object_size=8), PastedObjects)
