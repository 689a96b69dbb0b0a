"""Activation sites: parsing, one-pass capture equal to open_clip's own forward, and edits."""

from __future__ import annotations

import pytest
import torch

from cliplens.core.errors import SiteError
from cliplens.core.models import LoadedClip
from cliplens.core.sites import Site, encode_images, to_embedding_space


@pytest.mark.parametrize("text", ["final", "resid:0", "resid:11", "resid:3:patches"])
def test_site_round_trip(text: str) -> None:
    assert str(Site.parse(text)) == text


@pytest.mark.parametrize("text", ["", "resid", "resid:x", "resid:-1", "resid:1:cls", "mlp:1", "final:0"])
def test_malformed_site_is_rejected(text: str) -> None:
    with pytest.raises(SiteError, match="malformed site"):
        Site.parse(text)


def test_site_out_of_range_names_block_count(tiny_clip: LoadedClip) -> None:
    with pytest.raises(SiteError, match="2 blocks"):
        encode_images(tiny_clip.model, torch.randn(1, 3, 32, 32), ["resid:2"])


def test_capture_equals_open_clip_forward(tiny_clip: LoadedClip) -> None:
    images = torch.randn(3, 3, 32, 32)
    sites = ["final", "resid:0", "resid:1", "resid:0:patches", "resid:1:patches"]
    with torch.no_grad():
        got = encode_images(tiny_clip.model, images, sites)
        ref = tiny_clip.model.visual.forward_intermediates(images, output_fmt="NLC", output_extra_tokens=True)
    assert torch.equal(got.embedding, ref["image_features"])
    assert torch.equal(got["final"], ref["image_features"])
    for layer in (0, 1):
        assert torch.equal(got[f"resid:{layer}"], ref["image_intermediates_prefix"][layer][:, 0])
        assert torch.equal(got[f"resid:{layer}:patches"], ref["image_intermediates"][layer])
    assert got["resid:1:patches"].shape == (3, 16, 64)


def test_identity_edit_changes_nothing_and_real_edit_does(tiny_clip: LoadedClip) -> None:
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = encode_images(tiny_clip.model, images).embedding
        same = encode_images(tiny_clip.model, images, edits={"resid:1": lambda h: h}).embedding
        zeroed = encode_images(tiny_clip.model, images, edits={"resid:0:patches": torch.zeros_like}).embedding
        captured = encode_images(
            tiny_clip.model, images, ["resid:0:patches"], edits={"resid:0:patches": torch.zeros_like}
        )
    assert torch.equal(plain, same)
    assert not torch.allclose(plain, zeroed)
    assert captured["resid:0:patches"].abs().sum() > 0  # captures record the value before the edit


def test_to_embedding_space(tiny_clip: LoadedClip) -> None:
    visual = tiny_clip.model.visual
    assert to_embedding_space(visual, "resid:1", torch.randn(5, 64)).shape == (5, 32)
    vectors = torch.randn(4, 32)
    assert torch.equal(to_embedding_space(visual, "final", vectors), vectors)
    with pytest.raises(SiteError, match="width 32"):
        to_embedding_space(visual, "resid:0", vectors)
