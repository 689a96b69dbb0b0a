"""Steering in SAE space: exact round trips, agreement with a hand-made edit, effects, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.models import LoadedClip
from cliplens.core.prompts import PHOTO_TEMPLATES
from cliplens.core.sae import Sae, TopKConfig, build_sae
from cliplens.core.sites import encode_images
from cliplens.core.steering import (
    LatentEdit,
    check_edits,
    nearest_neighbours,
    steer_activations,
    steer_and_classify,
    steer_images,
    steering_effect,
)


def random_sae(d_in: int, site: str) -> Sae:
    torch.manual_seed(5)
    sae = build_sae(TopKConfig(d_in=d_in, d_sae=64, k=6, site=site)).eval()
    with torch.no_grad():
        sae.b_pre.normal_()
        sae.input_scale.fill_(2.0)
    return sae


@pytest.fixture(scope="module")
def images() -> Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(6))


@pytest.fixture(scope="module")
def embeddings(tiny_clip: LoadedClip, images: Tensor) -> Tensor:
    with torch.no_grad():
        return encode_images(tiny_clip.model, images).embedding


def test_add_then_subtract_returns_the_original_embedding(embeddings: Tensor) -> None:
    sae = random_sae(32, "final")
    edits = [LatentEdit(3, 2.5), LatentEdit(17, 0.75)]
    steered = steer_activations(sae, embeddings, edits)
    assert (steered - embeddings).norm(dim=-1).min() > 0.1
    back = steer_activations(sae, steered, [LatentEdit(e.latent, e.value, "subtract") for e in edits])
    torch.testing.assert_close(back, embeddings, atol=1e-5, rtol=1e-5)


def test_edits_move_along_decoder_directions(embeddings: Tensor) -> None:
    sae = random_sae(32, "final")
    directions = sae.decoder_directions().detach()
    with torch.no_grad():
        z = sae.encode(embeddings)
    added = steer_activations(sae, embeddings, [LatentEdit(9, 1.5, "add")])
    torch.testing.assert_close(added, embeddings + 1.5 * directions[9], atol=1e-5, rtol=1e-5)
    clamped = steer_activations(sae, embeddings, [LatentEdit(9, 0.0, "clamp"), LatentEdit(9, 4.0, "add")])
    expected = embeddings + (4.0 - z[:, 9:10]) * directions[9]
    torch.testing.assert_close(clamped, expected, atol=1e-5, rtol=1e-5)


def test_steering_at_a_residual_site_matches_a_hand_made_edit(tiny_clip: LoadedClip, images: Tensor) -> None:
    sae = random_sae(64, "resid:0")
    direction = sae.decoder_directions().detach()[11]
    steered = steer_images(tiny_clip, sae, images, [LatentEdit(11, 3.0)])
    with torch.no_grad():
        expected = encode_images(
            tiny_clip.model, images, edits={"resid:0": lambda h: h + 3.0 * direction}
        ).embedding
        original = encode_images(tiny_clip.model, images).embedding
    torch.testing.assert_close(steered, expected, atol=1e-5, rtol=1e-5)
    assert (steered - original).norm(dim=-1).min() > 1e-3


def test_steering_effect_moves_the_decision_towards_the_latent(
    tiny_clip: LoadedClip, images: Tensor, embeddings: Tensor
) -> None:
    sae = random_sae(32, "final")
    classifier = F.normalize(torch.randn(3, 32, generator=torch.Generator().manual_seed(7)), dim=-1)
    alignment = F.normalize(sae.decoder_directions().detach(), dim=-1) @ classifier.T
    latent = int(alignment.max(-1).values.argmax())
    target = int(alignment[latent].argmax())
    steered = steer_images(tiny_clip, sae, images, [LatentEdit(latent, 1e3)])
    effect = steering_effect(tiny_clip, embeddings, steered, classifier, bank=embeddings, k=2)
    scale = float(tiny_clip.model.logit_scale.detach().exp())
    before = (scale * F.normalize(embeddings, dim=-1) @ classifier.T).softmax(-1)
    torch.testing.assert_close(effect.probabilities_before, before)
    torch.testing.assert_close(effect.probabilities_after.sum(-1), torch.ones(4))
    assert bool((effect.probabilities_after.argmax(-1) == target).all())
    assert bool((effect.probability_change[:, target] > 0).all())
    assert torch.equal(effect.neighbours_before.ids[:, 0], torch.arange(4))
    torch.testing.assert_close(effect.neighbours_before.similarities[:, 0], torch.ones(4))
    assert effect.neighbours_after.similarities[:, 0].max() < 0.999


def test_steer_and_classify_matches_a_hand_computation(tiny_clip: LoadedClip, images: Tensor) -> None:
    sae = random_sae(32, "final")
    names = ["cat", "dog", "ship"]
    outcome = steer_and_classify(tiny_clip, sae, images, [LatentEdit(9, 1.5)], names)
    with torch.no_grad():
        original = tiny_clip.model.encode_image(images).float()
        prompts = [template.format(name) for name in names for template in PHOTO_TEMPLATES]
        per_prompt = F.normalize(tiny_clip.encode_texts(prompts).float(), dim=-1)
        classes = F.normalize(per_prompt.view(len(names), len(PHOTO_TEMPLATES), -1).mean(1), dim=-1)
        scale = tiny_clip.model.logit_scale.exp()
    steered = original + 1.5 * sae.decoder_directions().detach()[9]

    def probabilities(embeddings: Tensor) -> Tensor:
        return torch.softmax(scale * F.normalize(embeddings, dim=-1) @ classes.T, dim=-1)

    torch.testing.assert_close(outcome.original, original)
    torch.testing.assert_close(outcome.steered, steered, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outcome.probabilities_before, probabilities(original), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(outcome.probabilities_after, probabilities(steered), atol=1e-5, rtol=1e-4)
    assert outcome.probabilities_after.shape == (4, 3)
    assert not torch.allclose(outcome.probabilities_before, outcome.probabilities_after)


def test_steer_and_classify_without_class_names_has_no_probabilities(
    tiny_clip: LoadedClip, images: Tensor
) -> None:
    outcome = steer_and_classify(
        tiny_clip, random_sae(32, "final"), images[:1], [LatentEdit(2, 1.0, "clamp")]
    )
    assert outcome.probabilities_before.shape == outcome.probabilities_after.shape == (1, 0)
    assert outcome.probabilities_after[0].tolist() == []
    assert outcome.original.shape == outcome.steered.shape == (1, 32)


def test_check_edits_names_the_offending_field() -> None:
    edits = [LatentEdit(0, 1.0), LatentEdit(255, -2.0, "subtract"), LatentEdit(7, 0.0, "clamp")]
    assert check_edits(edits, 256) == edits
    assert type(check_edits([LatentEdit(3, 1)], 8)[0].value) is float
    cases = [
        ([], r"^edits: give at least one latent edit to steer with$"),
        ([*edits, LatentEdit(70000, 1.0)], r"^edits\[3\]\.latent: 70000 is not in \[0, 256\)$"),
        ([LatentEdit(-1, 1.0)], r"^edits\[0\]\.latent: -1 is not in \[0, 256\)$"),
        ([LatentEdit(1, float("nan"))], r"^edits\[0\]\.value: must be finite$"),
        ([edits[0], LatentEdit(1, float("-inf"), "clamp")], r"^edits\[1\]\.value: must be finite$"),
        (
            [LatentEdit(1, 1.0, "scale")],  # type: ignore[arg-type]
            r"^edits\[0\]\.mode: unknown steering mode 'scale'; choose one of add, subtract, clamp$",
        ),
    ]
    for bad, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            check_edits(bad, 256)
    with pytest.raises(InvalidInputError, match=r"^steer\[0\]\.latent: 4 is not in \[0, 4\)$"):
        check_edits([LatentEdit(4, 1.0)], 4, field="steer")


def test_bad_inputs_raise_clear_errors(tiny_clip: LoadedClip, images: Tensor, embeddings: Tensor) -> None:
    sae = random_sae(32, "final")
    with pytest.raises(InvalidInputError, match="at least one latent edit"):
        steer_activations(sae, embeddings, [])
    with pytest.raises(InvalidInputError, match=r"edits\[0\]\.latent: 64 is not in \[0, 64\)"):
        steer_activations(sae, embeddings, [LatentEdit(64, 1.0)])
    with pytest.raises(InvalidInputError, match=r"edits\[0\]\.mode: unknown steering mode 'scale'"):
        steer_activations(sae, embeddings, [LatentEdit(1, 1.0, "scale")])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"edits\[0\]\.value: must be finite"):
        steer_activations(sae, embeddings, [LatentEdit(1, float("nan"))])
    with pytest.raises(ShapeMismatchError, match="d_in=32"):
        steer_activations(sae, torch.randn(2, 31), [LatentEdit(1, 1.0)])
    with pytest.raises(ShapeMismatchError, match="does not match site 'resid:0'"):
        steer_images(tiny_clip, random_sae(32, "resid:0"), images, [LatentEdit(1, 1.0)])
    with pytest.raises(ShapeMismatchError, match="images must have shape"):
        steer_images(tiny_clip, sae, images[:, :, :16], [LatentEdit(1, 1.0)])
    with pytest.raises(InvalidInputError, match=r"k must be in \[1, 4\]"):
        nearest_neighbours(embeddings, embeddings, 5)
    with pytest.raises(ShapeMismatchError, match=r"embedding bank must have shape \(n, 32\)"):
        nearest_neighbours(embeddings, torch.randn(4, 16), 1)
    with pytest.raises(ShapeMismatchError, match="differ in shape"):
        steering_effect(tiny_clip, embeddings, embeddings[:2], torch.randn(3, 32), embeddings)
