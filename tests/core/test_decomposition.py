"""Exact decomposition of the image embedding, direct-effect scores, and input validation."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from cliplens.core.decomposition import PER_HEAD, Decomposition, decompose, direct_effects
from cliplens.core.errors import InvalidInputError, ShapeMismatchError, SiteError
from cliplens.core.models import LoadedClip, ModelSpec, load_clip

LAYER_SCALE_VIT = {
    "embed_dim": 32,
    "vision_cfg": {
        "image_size": 32,
        "layers": 2,
        "width": 64,
        "head_width": 16,
        "patch_size": 8,
        "ls_init_value": 0.5,
    },
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def _load(directory: Path, name: str, cfg: dict) -> LoadedClip:
    path = directory / f"{name}.json"
    path.write_text(json.dumps(cfg))
    torch.manual_seed(0)
    return load_clip(ModelSpec(id=name, arch=name, config=str(path)), device="cpu")


def _relative_error(decomposition: Decomposition, clip: LoadedClip, images: torch.Tensor) -> float:
    with torch.no_grad():
        reference = clip.model.encode_image(images)
    return float(((decomposition.total() - reference).norm(dim=-1) / reference.norm(dim=-1)).max())


def test_terms_sum_to_embedding_tiny(tiny_clip: LoadedClip) -> None:
    images = torch.randn(3, 3, 32, 32)
    decomposition = decompose(tiny_clip.model, images)
    assert decomposition.attention.shape == (3, 2, 4, 17, 32)
    assert decomposition.mlp.shape == (3, 2, 32)
    assert decomposition.embedding.shape == (3, 32)
    assert _relative_error(decomposition, tiny_clip, images) < 1e-4


def test_terms_sum_to_embedding_with_layer_scale(tmp_path: Path) -> None:
    clip = _load(tmp_path, "cliplens-test-ls-vit", LAYER_SCALE_VIT)
    assert isinstance(clip.model.visual.transformer.resblocks[0].ls_1, open_clip.transformer.LayerScale)
    images = torch.randn(2, 3, 32, 32)
    assert _relative_error(decompose(clip.model, images), clip, images) < 1e-4


def test_terms_sum_to_embedding_vit_b_32() -> None:
    clip = load_clip("ViT-B-32", device="cpu")
    images = torch.randn(1, 3, 224, 224)
    decomposition = decompose(clip.model, images)
    assert decomposition.attention.shape == (1, 12, 12, 50, 512)
    assert _relative_error(decomposition, clip, images) < 1e-4


def test_terms_sum_to_embedding_demo(demo_clip: LoadedClip) -> None:
    images = torch.randn(4, 3, 32, 32)
    decomposition = decompose(demo_clip.model, images)
    assert decomposition.attention.shape == (4, 4, 4, 65, 128)
    assert _relative_error(decomposition, demo_clip, images) < 1e-4


def test_summed_axes_keep_the_sum_and_the_per_layer_terms(demo_clip: LoadedClip) -> None:
    images = torch.randn(2, 3, 32, 32)
    full = decompose(demo_clip.model, images)
    per_head = decompose(demo_clip.model, images, sum_over=PER_HEAD)
    per_layer = decompose(demo_clip.model, images, sum_over=("heads", "tokens"))
    assert per_head.attention.shape == (2, 4, 4, 1, 128)
    assert per_layer.attention.shape == (2, 4, 1, 1, 128)
    torch.testing.assert_close(per_head.per_head(), full.per_head(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(per_layer.per_layer(), full.per_layer(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(per_layer.total(), full.total(), atol=1e-5, rtol=1e-4)
    with pytest.raises(InvalidInputError, match="summed over tokens"):
        per_head.per_patch()
    with pytest.raises(InvalidInputError, match="summed over heads"):
        per_layer.per_head()


def test_scores_sum_to_cosine_similarity(demo_clip: LoadedClip) -> None:
    images = torch.randn(3, 3, 32, 32)
    texts = demo_clip.encode_texts(["a photo of a cat.", "a photo of a truck."]).detach()
    with torch.no_grad():
        cosine = F.normalize(demo_clip.model.encode_image(images), dim=-1) @ F.normalize(texts, dim=-1).T
    scores = direct_effects(decompose(demo_clip.model, images), texts)
    torch.testing.assert_close(scores.total(), cosine, atol=1e-5, rtol=1e-4)
    by_head = scores.per_head().sum((1, 2)) + scores.mlp.sum(1) + scores.embedding
    torch.testing.assert_close(by_head, cosine, atol=1e-5, rtol=1e-4)
    assert scores.per_patch().shape == (3, 64, 2)
    assert scores.per_layer().shape == (3, 4, 2)
    one_text = direct_effects(decompose(demo_clip.model, images), texts[0])
    torch.testing.assert_close(one_text.total()[:, 0], cosine[:, 0], atol=1e-5, rtol=1e-4)


def test_normalized_terms_sum_to_unit_embedding(tiny_clip: LoadedClip) -> None:
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        unit = F.normalize(tiny_clip.model.encode_image(images), dim=-1)
    torch.testing.assert_close(
        decompose(tiny_clip.model, images).normalized().total(), unit, atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        (
            torch.randn(2, 3, 16, 16),
            ShapeMismatchError,
            r"\(16, 16\) pixels but the model expects \(32, 32\)",
        ),
        (torch.randn(2, 1, 32, 32), ShapeMismatchError, "batch, 3, height, width"),
        (torch.randn(3, 32, 32), ShapeMismatchError, "batch, 3, height, width"),
        (
            torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
            InvalidInputError,
            "float tensor, got dtype torch.uint8",
        ),
        (torch.randn(0, 3, 32, 32), InvalidInputError, "empty batch"),
    ],
)
def test_bad_images_are_rejected(
    tiny_clip: LoadedClip, images: torch.Tensor, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        decompose(tiny_clip.model, images)


def test_bad_indices_and_axes_are_rejected(tiny_clip: LoadedClip) -> None:
    decomposition = decompose(tiny_clip.model, torch.randn(1, 3, 32, 32))
    with pytest.raises(InvalidInputError, match="layer 2 is out of range"):
        decomposition.head(2, 0)
    with pytest.raises(InvalidInputError, match="head 4 is out of range"):
        decomposition.head(1, 4)
    with pytest.raises(InvalidInputError, match="unknown attention axes"):
        decomposition.sum_attention(["patches"])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="sum_over must name axes"):
        decompose(tiny_clip.model, torch.randn(1, 3, 32, 32), sum_over=["layers"])  # type: ignore[list-item]
    with pytest.raises(ShapeMismatchError, match="texts must be"):
        direct_effects(decomposition, torch.randn(2, 3, 32))
    with pytest.raises(ShapeMismatchError, match="do not match terms of width 32"):
        direct_effects(decomposition, torch.randn(2, 16))


def test_unsupported_towers_are_rejected(tmp_path: Path) -> None:
    avg_pool = json.loads(json.dumps(LAYER_SCALE_VIT))
    avg_pool["vision_cfg"]["pool_type"] = "avg"
    clip = _load(tmp_path, "cliplens-test-avg-vit", avg_pool)
    with pytest.raises(SiteError, match="pools with 'avg'"):
        decompose(clip.model, torch.randn(1, 3, 32, 32))
    resnet = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16},
        "text_cfg": LAYER_SCALE_VIT["text_cfg"],
    }
    clip = _load(tmp_path, "cliplens-test-rn", resnet)
    with pytest.raises(
        SiteError, match="needs an open_clip VisionTransformer image tower; got ModifiedResNet"
    ):
        decompose(clip.model, torch.randn(1, 3, 32, 32))
