"""Model loading: registry ids, open_clip arch + checkpoint paths, dtypes and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision.transforms import Compose, Resize, ToTensor

from cliplens.core.errors import (
    InvalidInputError,
    NotFoundError,
    UnknownArchitectureError,
    WeightsNotFoundError,
)
from cliplens.core.models import ASSETS_DIR, LoadedClip, ModelRegistry, ModelSpec, PixelSteps, load_clip
from tiny_models import tiny_spec


def _images(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_tiny_model_loads_in_eval_mode_with_frozen_weights(tiny_clip: LoadedClip) -> None:
    assert not tiny_clip.model.training
    assert not any(p.requires_grad for p in tiny_clip.model.parameters())
    assert tiny_clip.embed_dim == 32 and tiny_clip.image_size == 32
    assert tiny_clip.encode_texts(["a cat", "a dog"]).shape == (2, 32)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_checkpoint_path_round_trip(tiny_clip: LoadedClip, tmp_path: Path, suffix: str) -> None:
    state = {k: v.contiguous() for k, v in tiny_clip.model.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    spec = ModelSpec(
        id="reloaded", arch=tiny_clip.spec.arch, pretrained=str(path), config=tiny_clip.spec.config
    )
    reloaded = load_clip(spec, device="cpu")
    images = _images()
    with torch.no_grad():
        assert torch.equal(reloaded.model.encode_image(images), tiny_clip.model.encode_image(images))


def test_dtype_and_device(tiny_clip: LoadedClip) -> None:
    half = load_clip(tiny_clip.spec, device="cpu", dtype="bf16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    assert half.device == torch.device("cpu")


def test_registry_resolves_relative_paths_and_env_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models.json").write_text(
        json.dumps({"mine": {"arch": "ViT-B-32", "pretrained": "weights/mine.safetensors"}})
    )
    registry = ModelRegistry.from_file(tmp_path / "models.json")
    assert registry.get("mine").pretrained == str(tmp_path / "weights" / "mine.safetensors")
    monkeypatch.setenv("CLIPLENS_MODELS", str(tmp_path / "models.json"))
    merged = ModelRegistry.default()
    assert "mine" in merged and "demo" in merged


def test_unknown_model_id_lists_known_ids() -> None:
    with pytest.raises(NotFoundError, match="unknown model id 'nope'.*demo"):
        ModelRegistry.default().get("nope")


def test_unknown_arch_is_named() -> None:
    with pytest.raises(UnknownArchitectureError, match="'ViT-B-33'.*ViT-B-32"):
        load_clip("ViT-B-33", device="cpu")


def test_missing_checkpoint_names_model_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.safetensors"
    with pytest.raises(WeightsNotFoundError, match=f"'ViT-B-32'.*{missing}"):
        load_clip("ViT-B-32", pretrained=str(missing), device="cpu")


def test_unknown_pretrained_tag_is_named() -> None:
    with pytest.raises(WeightsNotFoundError, match="no pretrained tag 'not-a-tag'.*laion2b"):
        load_clip("ViT-B-32", pretrained="not-a-tag", device="cpu")


@pytest.mark.integration  # builds ViT-B/32 and asks the (unreachable) hub: slow for the unit tier
def test_unreachable_download_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No model hub is reachable here: a real tag must fail with the tag named, not hang or crash oddly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="laion2b_s34b_b79k"):
        load_clip("vit-b-32-laion2b", device="cpu")


def test_mismatched_config_name_is_rejected(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path, name="cliplens-test-other")
    with pytest.raises(Exception, match="must be named"):
        load_clip(ModelSpec(id="x", arch="cliplens-test-renamed", config=spec.config), device="cpu")


def test_demo_model_loads_with_plain_open_clip() -> None:
    """The README's recipe: register the shipped config, then create_model_and_transforms(name, pretrained=path)."""
    demo = ASSETS_DIR / "demo"
    open_clip.add_model_config(demo / "cliplens-demo-cifar10.json")
    model, _, _ = open_clip.create_model_and_transforms(
        "cliplens-demo-cifar10", pretrained=str(demo / "cliplens-demo-cifar10.fp16.safetensors")
    )
    ours = load_clip("demo", device="cpu")
    images = _images()
    with torch.no_grad():
        assert torch.allclose(model.eval().encode_image(images), ours.model.encode_image(images))


def _photos() -> list[Image.Image]:
    """A non-square RGB photo-like image, a grayscale one and an RGBA one (different sizes)."""
    generator = np.random.default_rng(3)
    rgb = Image.fromarray(generator.integers(0, 256, (45, 70, 3), dtype=np.uint8))
    gray = Image.fromarray(generator.integers(0, 256, (64, 40), dtype=np.uint8))
    rgba = Image.fromarray(generator.integers(0, 256, (33, 33, 4), dtype=np.uint8))
    return [rgb, gray, rgba]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_batched_preprocessing_equals_open_clips_transform(tiny_clip: LoadedClip, dtype: str) -> None:
    clip = load_clip(tiny_clip.spec, device="cpu", dtype=dtype)
    photos = _photos()
    pixels = torch.stack([clip.pixel_steps.pixels(photo) for photo in photos])
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 3, 32, 32)
    expected = torch.stack([clip.preprocess(photo) for photo in photos]).to(clip.dtype)
    assert torch.equal(clip.normalise_pixels(pixels), expected)
    assert torch.equal(clip.preprocess_images(photos), expected)


def test_transform_without_totensor_normalize_tail_is_named() -> None:
    with pytest.raises(InvalidInputError, match=r"ToTensor, Normalize.*\['Resize', 'ToTensor'\]"):
        PixelSteps.of(Compose([Resize(32), ToTensor()]))
