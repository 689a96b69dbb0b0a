"""Attribution of image-text similarity to SAE latents (Dreyer et al. 2025) and its baselines.

The score is ``y = cos(f_I(x), f_T(t))``. The SAE is spliced in at its site as
``h' = x_hat + (h - x_hat).detach()`` with ``x_hat = decode(z)``: the forward pass equals the original
model exactly, and gradients reach the latents ``z`` through the decoder. Latent ``k`` gets
``R_k = z_k * dy/dz_k`` (summed over patches at ``resid:L:patches`` sites); the SAE's error
``h - x_hat`` and its decoder bias get ``err . dy/dh'`` and ``b . dy/dh'``.

Norm convention: by default (``freeze_norm=True``) the image-embedding norm is treated as a constant,
``y = <f_I(x), t_hat> / stopgrad(||f_I(x)||)``. The value is unchanged, and at the ``final`` site the
score becomes linear in ``z``: ``R_k = z_k <d_k, t_hat> / ||e||`` and latents + bias + error add up to
``y`` exactly. At residual sites the model in between is non-linear, so the sum only approximates ``y``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.models import LoadedClip
from cliplens.core.sae import Sae
from cliplens.core.sites import Site, encode_images, to_embedding_space
from cliplens.core.zeroshot import check_sae_fits

Method = Literal["attribution", "logit_lens", "act_logit_lens", "energy", "random"]
METHODS: tuple[Method, ...] = get_args(Method)
BASELINES: tuple[Method, ...] = METHODS[1:]


@dataclass(frozen=True)
class TopLatents:
    """The ``n`` highest-scoring latents per image and text, best first."""

    ids: Int[Tensor, "batch n_texts n"]
    values: Float[Tensor, "batch n_texts n"]


@dataclass(frozen=True)
class LatentAttribution:
    """Per-latent scores of a method for every (image, text) pair, and the facts of the SAE splice.

    ``scores`` is ``y``; ``error`` and ``bias`` are the gradient attributions of the SAE's error term
    and decoder bias (shared by all methods: they say how much of ``y`` the latents cannot account
    for). ``activations`` are the latents ``z`` (with a patch axis at patch sites). ``patch_maps``
    holds ``z_{p,k} dy/dz_{p,k}`` per patch for the requested ``patch_latents`` (patch sites only).
    """

    method: Method
    site: str
    scores: Float[Tensor, "batch n_texts"]
    attributions: Float[Tensor, "batch n_texts d_sae"]
    error: Float[Tensor, "batch n_texts"]
    bias: Float[Tensor, "batch n_texts"]
    activations: Float[Tensor, "batch *patches d_sae"]
    texts: Float[Tensor, "n_texts d_embed"]
    patch_latents: tuple[int, ...] = ()
    patch_maps: Float[Tensor, "batch n_texts n_chosen n_patches"] | None = None

    @property
    def latent_activations(self) -> Float[Tensor, "batch d_sae"]:
        """Activations summed over patches (the activations themselves at single-vector sites)."""
        return self.activations.sum(1) if self.activations.ndim == 3 else self.activations

    @property
    def error_share(self) -> Float[Tensor, "batch n_texts"]:
        """The error term's attribution as a fraction of ``y``."""
        return self.error / self.scores

    def top(self, n: int) -> TopLatents:
        """The ``n`` latents with the largest attribution for each image and text."""
        d_sae = self.attributions.shape[-1]
        if not 1 <= n <= d_sae:
            raise InvalidInputError(f"n must be in [1, d_sae={d_sae}], got {n}")
        values, ids = self.attributions.topk(n, dim=-1)
        return TopLatents(ids, values)


def check_images(clip: LoadedClip, images: Tensor) -> None:
    """Raise unless ``images`` is a non-empty float batch ``(batch, 3, size, size)`` for ``clip``."""
    size = clip.image_size
    if not isinstance(images, Tensor) or not images.is_floating_point():
        kind = images.dtype if isinstance(images, Tensor) else type(images).__name__
        raise InvalidInputError(f"images must be a floating-point tensor, got {kind}")
    if images.ndim != 4 or images.shape[0] == 0 or tuple(images.shape[1:]) != (3, size, size):
        raise ShapeMismatchError(
            f"images must have shape (batch >= 1, 3, {size}, {size}) for model '{clip.spec.id}', "
            f"got {tuple(images.shape)}"
        )


def normalized_texts(clip: LoadedClip, text_embeddings: Tensor) -> Float[Tensor, "n_texts d_embed"]:
    """Unit-norm float copies of ``text_embeddings``; raises unless they are ``(n_texts >= 1, d_embed)``."""
    if text_embeddings.ndim != 2 or text_embeddings.shape[-1] != clip.embed_dim:
        raise ShapeMismatchError(
            f"text embeddings must have shape (n_texts, {clip.embed_dim}), got {tuple(text_embeddings.shape)}"
        )
    if text_embeddings.shape[0] == 0:
        raise InvalidInputError("text embeddings must not be empty: give at least one text")
    return F.normalize(text_embeddings.float(), dim=-1).to(clip.device)


def attribute_latents(
    clip: LoadedClip,
    sae: Sae,
    images: Float[Tensor, "batch 3 height width"],
    text_embeddings: Float[Tensor, "n_texts d_embed"],
    *,
    patch_latents: Sequence[int] = (),
    freeze_norm: bool = True,
    batch_size: int = 64,
) -> LatentAttribution:
    """Attribute ``y = cos(f_I(x), f_T(t))`` for every image and text to the SAE's latents.

    One forward pass per batch of images serves every text: each backward pass propagates one
    probe vector of the (linear in ``f_I(x)``) score, using ``min(n_texts, d_embed)`` probes.
    ``patch_latents`` asks for per-patch maps of those latents (patch sites only).
    """
    site = check_sae_fits(sae, clip)
    check_images(clip, images)
    texts = normalized_texts(clip, text_embeddings)
    for latent in patch_latents:
        sae.check_index(latent)
    if patch_latents and not site.patches:
        raise InvalidInputError(f"per-patch maps need a patch site, but the SAE sits at '{site}'")
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be positive, got {batch_size}")
    parts = [
        _attribute_batch(
            clip, sae, site, images[i : i + batch_size], texts, tuple(patch_latents), freeze_norm
        )
        for i in range(0, images.shape[0], batch_size)
    ]
    return LatentAttribution(
        method="attribution",
        site=str(site),
        scores=torch.cat([p.scores for p in parts]),
        attributions=torch.cat([p.attributions for p in parts]),
        error=torch.cat([p.error for p in parts]),
        bias=torch.cat([p.bias for p in parts]),
        activations=torch.cat([p.activations for p in parts]),
        texts=texts,
        patch_latents=tuple(patch_latents),
        patch_maps=torch.cat([p.patch_maps for p in parts if p.patch_maps is not None])
        if patch_latents
        else None,
    )


@dataclass
class _Spliced:
    """What the splice hook recorded: the latents (a leaf), the spliced value and the error."""

    z: Tensor | None = None
    spliced: Tensor | None = None
    error: Tensor | None = None


def _attribute_batch(
    clip: LoadedClip,
    sae: Sae,
    site: Site,
    images: Tensor,
    texts: Tensor,
    patch_latents: tuple[int, ...],
    freeze_norm: bool,
) -> LatentAttribution:
    record = _Spliced()

    def splice(h: Tensor) -> Tensor:
        z = sae.encode(h.detach().float()).detach().requires_grad_(True)
        x_hat = sae.decode(z)
        error = h.float() - x_hat
        record.z, record.error = z, error.detach()
        record.spliced = x_hat + error.detach()
        return record.spliced.to(h.dtype)

    with torch.enable_grad():
        embedding = encode_images(
            clip.model, images.to(clip.device, clip.dtype), edits={site: splice}
        ).embedding.float()
        assert record.z is not None and record.spliced is not None and record.error is not None
        norm = embedding.detach().norm(dim=-1, keepdim=True)
        scores = (embedding.detach() / norm) @ texts.T
        # dy/de for each (image, text): t_hat / ||e||, minus the norm's share unless it is frozen.
        direction = texts[None] / norm[:, :, None]
        if not freeze_norm:
            direction = direction - scores[..., None] * (embedding.detach() / norm.pow(2))[:, None]
        probes, mixing = _probes(direction)
        decoder_bias = (sae.b_pre / sae.input_scale).detach()
        attributions, errors, biases, maps = [], [], [], []
        for m in range(probes.shape[1]):
            grad_z, grad_h = torch.autograd.grad(
                (embedding * probes[:, m]).sum(), (record.z, record.spliced), retain_graph=True
            )
            contribution = (record.z * grad_z).detach()
            attributions.append(_sum_patches(contribution))
            errors.append(_sum_rows(record.error * grad_h))
            biases.append(_sum_rows(decoder_bias * grad_h))
            maps.append(contribution[..., list(patch_latents)].transpose(-1, -2))
    return LatentAttribution(
        method="attribution",
        site=str(site),
        scores=scores,
        attributions=_mix(attributions, mixing),
        error=_mix(errors, mixing),
        bias=_mix(biases, mixing),
        activations=record.z.detach(),
        texts=texts,
        patch_latents=patch_latents,
        patch_maps=_mix(maps, mixing) if patch_latents else None,
    )


def _probes(direction: Float[Tensor, "batch n_texts d_embed"]) -> tuple[Tensor, Tensor | None]:
    """Vectors to back-propagate and how to mix their results into per-text ones.

    With at most ``d_embed`` texts, each text's direction is a probe (no mixing); with more, the
    ``d_embed`` basis vectors are, and each text mixes them with its direction's coordinates.
    """
    batch, n_texts, dim = direction.shape
    if n_texts <= dim:
        return direction, None
    basis = torch.eye(dim, device=direction.device).expand(batch, dim, dim)
    return basis, direction


def _mix(per_probe: list[Tensor], mixing: Tensor | None) -> Tensor:
    """Stack per-probe results on axis 1; with ``mixing`` (batch, n_texts, n_probes), combine them."""
    stacked = torch.stack(per_probe, dim=1)
    if mixing is None:
        return stacked
    return torch.einsum("bjm,bm...->bj...", mixing, stacked)


def _sum_patches(values: Tensor) -> Tensor:
    return values.sum(1) if values.ndim == 3 else values


def _sum_rows(values: Tensor) -> Tensor:
    return values.flatten(1).sum(1).detach()


def baseline_attribution(
    clip: LoadedClip, sae: Sae, reference: LatentAttribution, method: Method, seed: int = 0
) -> LatentAttribution:
    """A baseline's latent scores for the same images and texts as ``reference``.

    ``logit_lens``: ``L_k = cos(to_embedding_space(d_k), t)`` (input-independent);
    ``act_logit_lens``: ``z_k L_k``; ``energy``: ``z_k ||d_k||``; ``random``: seeded uniform scores
    over the active latents (inactive ones score ``-inf``). ``attribution`` returns ``reference``.
    """
    if method not in METHODS:
        raise InvalidInputError(f"unknown attribution method '{method}'; choose one of {', '.join(METHODS)}")
    if method == "attribution":
        return reference
    z = reference.latent_activations
    batch, n_texts, d_sae = reference.attributions.shape
    directions = sae.decoder_directions().detach()
    if method in ("logit_lens", "act_logit_lens"):
        lens = logit_lens(clip, sae, reference.texts)
        scores = lens[None].expand(batch, -1, -1) if method == "logit_lens" else z[:, None] * lens[None]
    elif method == "energy":
        scores = (z * directions.norm(dim=-1))[:, None].expand(-1, n_texts, -1)
    else:
        generator = torch.Generator().manual_seed(seed)
        noise = torch.rand(batch, 1, d_sae, generator=generator).to(z.device)
        scores = noise.masked_fill(z[:, None] <= 0, float("-inf")).expand(-1, n_texts, -1)
    return replace(reference, method=method, attributions=scores.contiguous(), patch_maps=None)


@torch.no_grad()
def logit_lens(clip: LoadedClip, sae: Sae, texts: Float[Tensor, "n_texts d_embed"]) -> Tensor:
    """``cos(to_embedding_space(d_k), t)`` for every text and latent: ``(n_texts, d_sae)``."""
    site = check_sae_fits(sae, clip)
    visual = clip.model.visual
    directions = sae.decoder_directions().to(clip.device, clip.dtype)
    mapped = F.normalize(to_embedding_space(visual, site, directions).float(), dim=-1)
    return normalized_texts(clip, texts) @ mapped.T
