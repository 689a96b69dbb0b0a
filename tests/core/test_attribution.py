"""Latent attribution against independent autograd and closed-form computations, baselines, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from cliplens.core.attribution import (
    BASELINES,
    attribute_latents,
    baseline_attribution,
    logit_lens,
)
from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.models import LoadedClip
from cliplens.core.sae import Sae, TopKConfig, build_sae
from cliplens.core.sites import encode_images

SITES = ["final", "resid:0", "resid:0:patches"]


def random_sae(clip: LoadedClip, site: str, d_sae: int = 96) -> Sae:
    """A random TopK SAE with a non-zero decoder bias, so that every term of the sum is exercised."""
    torch.manual_seed(1)
    width = clip.embed_dim if site == "final" else clip.model.visual.transformer.width
    sae = build_sae(TopKConfig(d_in=width, d_sae=d_sae, k=8, site=site)).eval()
    with torch.no_grad():
        sae.b_pre.normal_()
        sae.input_scale.fill_(0.5)
    return sae


@pytest.fixture(scope="module")
def images() -> Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def texts() -> Tensor:
    return torch.randn(5, 32, generator=torch.Generator().manual_seed(3))


def autograd_reference(
    clip: LoadedClip, sae: Sae, images: Tensor, text: Tensor, freeze_norm: bool
) -> tuple[Tensor, Tensor]:
    """Per-text full forward of the unmodified model; dy/dh by autograd at the site, then the chain rule
    by hand: ``R_k = sum_p z_{p,k} <d_k, dy/dh_p>`` and the error term ``<h - x_hat, dy/dh>``."""
    site = sae.cfg.site
    captured = encode_images(clip.model, images, sites=[site])[site].detach()
    delta = torch.zeros_like(captured, requires_grad=True)
    embedding = encode_images(clip.model, images, edits={site: lambda h: h + delta}).embedding
    norm = embedding.norm(dim=-1)
    y = embedding @ F.normalize(text, dim=-1) / (norm.detach() if freeze_norm else norm)
    (grad,) = torch.autograd.grad(y.sum(), delta)
    with torch.no_grad():
        z = sae.encode(captured)
        per_latent = z * (grad @ sae.decoder_directions().T)
        error = ((captured - sae(captured)) * grad).flatten(1).sum(1)
    return (per_latent.sum(1) if per_latent.ndim == 3 else per_latent), error


@pytest.mark.parametrize("freeze_norm", [True, False])
@pytest.mark.parametrize("site", SITES)
def test_attribution_equals_independent_autograd(
    tiny_clip: LoadedClip, images: Tensor, texts: Tensor, site: str, freeze_norm: bool
) -> None:
    sae = random_sae(tiny_clip, site)
    result = attribute_latents(tiny_clip, sae, images, texts, freeze_norm=freeze_norm)
    assert result.attributions.shape == (3, 5, 96)
    for j, text in enumerate(texts):
        expected, error = autograd_reference(tiny_clip, sae, images, text, freeze_norm)
        torch.testing.assert_close(result.attributions[:, j], expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(result.error[:, j], error, atol=1e-5, rtol=1e-4)
    assert result.attributions.abs().sum() > 0


@pytest.mark.parametrize("site", SITES)
def test_forward_pass_is_unchanged_by_the_splice(
    tiny_clip: LoadedClip, images: Tensor, texts: Tensor, site: str
) -> None:
    result = attribute_latents(tiny_clip, random_sae(tiny_clip, site), images, texts)
    with torch.no_grad():
        embedding = encode_images(tiny_clip.model, images).embedding
    expected = F.normalize(embedding, dim=-1) @ F.normalize(texts, dim=-1).T
    torch.testing.assert_close(result.scores, expected, atol=1e-6, rtol=1e-5)


def test_final_site_matches_closed_form_and_is_complete(
    tiny_clip: LoadedClip, images: Tensor, texts: Tensor
) -> None:
    sae = random_sae(tiny_clip, "final")
    result = attribute_latents(tiny_clip, sae, images, texts)
    with torch.no_grad():
        embedding = tiny_clip.model.encode_image(images)
        z = sae.encode(embedding)
        norm = embedding.norm(dim=-1)[:, None, None]
        unit_texts = F.normalize(texts, dim=-1)
        closed_form = z[:, None] * (unit_texts @ sae.decoder_directions().T)[None] / norm
        bias = (unit_texts @ (sae.b_pre / sae.input_scale))[None] / norm[..., 0]
        error = ((embedding - sae(embedding)) @ unit_texts.T) / norm[..., 0]
    torch.testing.assert_close(result.attributions, closed_form, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(result.bias, bias.expand(3, -1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(result.error, error, atol=1e-6, rtol=1e-5)
    total = result.attributions.sum(-1) + result.bias + result.error
    torch.testing.assert_close(total, result.scores, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(result.error_share, result.error / result.scores)


@pytest.mark.parametrize("site", ["final", "resid:0:patches"])
def test_many_texts_take_the_basis_route_and_agree(tiny_clip: LoadedClip, images: Tensor, site: str) -> None:
    """More texts than embedding dimensions switches to basis probes; results must not change."""
    sae = random_sae(tiny_clip, site)
    many = torch.randn(40, 32, generator=torch.Generator().manual_seed(4))
    both = attribute_latents(tiny_clip, sae, images, many, patch_latents=[3] if "patches" in site else ())
    few = attribute_latents(tiny_clip, sae, images, many[:6], patch_latents=[3] if "patches" in site else ())
    torch.testing.assert_close(both.attributions[:, :6], few.attributions, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(both.error[:, :6], few.error, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(both.bias[:, :6], few.bias, atol=1e-6, rtol=1e-5)
    if both.patch_maps is not None and few.patch_maps is not None:
        torch.testing.assert_close(both.patch_maps[:, :6], few.patch_maps, atol=1e-6, rtol=1e-5)


def test_batches_are_independent(tiny_clip: LoadedClip, images: Tensor, texts: Tensor) -> None:
    sae = random_sae(tiny_clip, "resid:0")
    whole = attribute_latents(tiny_clip, sae, images, texts)
    chunked = attribute_latents(tiny_clip, sae, images, texts, batch_size=2)
    torch.testing.assert_close(whole.attributions, chunked.attributions, atol=1e-6, rtol=1e-5)


def test_patch_maps_sum_to_latent_attributions(tiny_clip: LoadedClip, images: Tensor, texts: Tensor) -> None:
    sae = random_sae(tiny_clip, "resid:0:patches")
    result = attribute_latents(tiny_clip, sae, images, texts)
    chosen = result.top(2).ids[0, 0].tolist()
    mapped = attribute_latents(tiny_clip, sae, images, texts, patch_latents=chosen)
    assert mapped.patch_maps is not None and mapped.patch_maps.shape == (3, 5, 2, 16)
    torch.testing.assert_close(mapped.patch_maps.sum(-1), result.attributions[..., chosen])
    assert result.activations.shape == (3, 16, 96)


def test_top_returns_largest_attributions(tiny_clip: LoadedClip, images: Tensor, texts: Tensor) -> None:
    result = attribute_latents(tiny_clip, random_sae(tiny_clip, "final"), images, texts)
    top = result.top(4)
    assert top.ids.shape == (3, 5, 4)
    torch.testing.assert_close(top.values, result.attributions.gather(-1, top.ids))
    assert bool((top.values[..., :-1] >= top.values[..., 1:]).all())
    assert bool((top.values[..., -1:] >= result.attributions.sort(-1).values[..., -4:-3]).all())


def test_baselines(tiny_clip: LoadedClip, images: Tensor, texts: Tensor) -> None:
    sae = random_sae(tiny_clip, "resid:0:patches")
    reference = attribute_latents(tiny_clip, sae, images, texts)
    visual = tiny_clip.model.visual
    with torch.no_grad():
        mapped = visual.ln_post(sae.decoder_directions()) @ visual.proj
    lens = F.normalize(texts, dim=-1) @ F.normalize(mapped, dim=-1).T
    torch.testing.assert_close(logit_lens(tiny_clip, sae, texts), lens)
    z = reference.activations.sum(1)
    results = {m: baseline_attribution(tiny_clip, sae, reference, m, seed=7) for m in BASELINES}
    torch.testing.assert_close(results["logit_lens"].attributions, lens[None].expand(3, -1, -1))
    torch.testing.assert_close(results["act_logit_lens"].attributions, z[:, None] * lens[None])
    energy = z * sae.decoder_directions().norm(dim=-1)
    torch.testing.assert_close(results["energy"].attributions, energy[:, None].expand(-1, 5, -1))
    random = results["random"].attributions
    assert bool(torch.isfinite(random).eq(z[:, None] > 0).all())
    assert torch.equal(random, baseline_attribution(tiny_clip, sae, reference, "random", seed=7).attributions)
    assert not torch.equal(
        random, baseline_attribution(tiny_clip, sae, reference, "random", seed=8).attributions
    )
    for method, result in results.items():
        assert result.method == method
        assert torch.equal(result.scores, reference.scores)


def test_bad_inputs_raise_clear_errors(tiny_clip: LoadedClip, images: Tensor, texts: Tensor) -> None:
    patch_sae = random_sae(tiny_clip, "resid:0:patches")
    final_sae = random_sae(tiny_clip, "final")
    with pytest.raises(InvalidInputError, match="latent index 96 is out of range"):
        attribute_latents(tiny_clip, patch_sae, images, texts, patch_latents=[96])
    with pytest.raises(InvalidInputError, match="per-patch maps need a patch site"):
        attribute_latents(tiny_clip, final_sae, images, texts, patch_latents=[0])
    with pytest.raises(InvalidInputError, match="must not be empty"):
        attribute_latents(tiny_clip, final_sae, images, texts[:0])
    with pytest.raises(ShapeMismatchError, match=r"text embeddings must have shape \(n_texts, 32\)"):
        attribute_latents(tiny_clip, final_sae, images, torch.randn(2, 31))
    with pytest.raises(ShapeMismatchError, match=r"images must have shape \(batch >= 1, 3, 32, 32\)"):
        attribute_latents(tiny_clip, final_sae, torch.randn(2, 3, 16, 16), texts)
    with pytest.raises(ShapeMismatchError, match="images must have shape"):
        attribute_latents(tiny_clip, final_sae, images[:0], texts)
    with pytest.raises(InvalidInputError, match="floating-point"):
        attribute_latents(tiny_clip, final_sae, images.to(torch.uint8), texts)
    mismatched = build_sae(TopKConfig(d_in=48, d_sae=64, k=4, site="resid:0"))
    with pytest.raises(ShapeMismatchError, match="does not match site 'resid:0'"):
        attribute_latents(tiny_clip, mismatched, images, texts)
    result = attribute_latents(tiny_clip, final_sae, images, texts)
    with pytest.raises(InvalidInputError, match=r"n must be in \[1, d_sae=96\]"):
        result.top(0)
    with pytest.raises(InvalidInputError, match="unknown attribution method"):
        baseline_attribution(tiny_clip, final_sae, result, "saliency")  # type: ignore[arg-type]
