"""Exact decomposition of a ViT image embedding into direct contributions (Gandelsman et al., ICLR 2024).

The CLS residual after the last block is the sum of the embedding term (CLS after ``ln_pre``), one MLP
output per layer, and one attention term per layer, head and source token. ``ln_post`` is made
affine by freezing its mean and standard deviation at the actual CLS input, so that every term maps
into the image-embedding space and the mapped terms sum to ``model.encode_image(images)``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from cliplens.core.errors import InvalidInputError, ShapeMismatchError, SiteError
from cliplens.core.sites import ClipModel, ImageTower

Axis = Literal["heads", "tokens"]
# open_clip's ResidualAttentionBlock exposes its parts as dynamic attributes (attn, ln_1, ls_1, ...).
ResidualBlock = Any
AXES: tuple[Axis, ...] = ("heads", "tokens")
# Summing over source tokens keeps one term per head: enough for head scores, ablation and TextSpan.
PER_HEAD: frozenset[Axis] = frozenset({"tokens"})
# Summing over heads keeps one term per layer and source token: enough for patch scores.
PER_TOKEN: frozenset[Axis] = frozenset({"heads"})


@dataclass(frozen=True)
class Decomposition:
    """Direct contributions of every component to the image embedding, in a trailing feature space.

    The feature axis is the image-embedding space (``d_embed``) after :func:`decompose`, and one
    score per text after :func:`direct_effects`. Axes named in ``summed`` were summed at
    decomposition time and have size 1. Token 0 of the attention terms is the CLS token itself;
    ``norm`` is each image embedding's norm (see :meth:`normalized`).
    """

    embedding: Float[Tensor, "batch features"]
    mlp: Float[Tensor, "batch layers features"]
    attention: Float[Tensor, "batch layers heads tokens features"]
    norm: Float[Tensor, " batch"]
    summed: frozenset[Axis] = frozenset()

    @property
    def n_layers(self) -> int:
        return int(self.mlp.shape[1])

    @property
    def n_heads(self) -> int:
        self._require("heads")
        return int(self.attention.shape[2])

    def total(self) -> Float[Tensor, "batch features"]:
        """The sum of all terms: the image embedding (or, after scoring, the cosine similarity)."""
        return self.embedding + self.mlp.sum(1) + self.attention.sum((1, 2, 3))

    def sum_attention(self, over: Iterable[Literal["layers", Axis]]) -> Tensor:
        """Attention terms summed over the named axes (the others are kept, in order)."""
        dims = {"layers": 1, "heads": 2, "tokens": 3}
        names = set(over)
        unknown = names - dims.keys()
        if unknown:
            raise InvalidInputError(f"unknown attention axes {sorted(unknown)}; choose from {sorted(dims)}")
        return self.attention.sum(tuple(dims[name] for name in names)) if names else self.attention

    def per_layer(self) -> Float[Tensor, "batch layers features"]:
        """Attention of each layer summed over heads and tokens (the MLP terms are ``self.mlp``)."""
        return self.sum_attention(("heads", "tokens"))

    def per_head(self) -> Float[Tensor, "batch layers heads features"]:
        """Each head's attention term summed over source tokens."""
        self._require("heads")
        return self.sum_attention(("tokens",))

    def per_patch(self) -> Float[Tensor, "batch patches features"]:
        """Each patch token's attention terms summed over layers and heads (the CLS source excluded)."""
        self._require("tokens")
        return self.sum_attention(("layers", "heads"))[:, 1:]

    def head(self, layer: int, head: int) -> Float[Tensor, "batch features"]:
        """One head's direct contribution, summed over source tokens."""
        self.check_head(layer, head)
        return self.attention[:, layer, head].sum(1)

    def check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise InvalidInputError(
                f"layer {layer} is out of range: the model has layers 0..{self.n_layers - 1}"
            )

    def check_head(self, layer: int, head: int) -> None:
        self.check_layer(layer)
        if not 0 <= head < self.n_heads:
            raise InvalidInputError(
                f"head {head} is out of range: each layer has heads 0..{self.n_heads - 1}"
            )

    def normalized(self) -> Decomposition:
        """Every term divided by the embedding norm: the terms then sum to the unit-norm embedding."""
        scale = 1.0 / self.norm

        def div(t: Tensor) -> Tensor:
            return t * scale.view(-1, *[1] * (t.dim() - 1))

        return replace(self, embedding=div(self.embedding), mlp=div(self.mlp), attention=div(self.attention))

    def project(self, directions: Float[Tensor, "features k"]) -> Decomposition:
        """Every term mapped linearly through ``directions`` (e.g. dotted with text embeddings)."""
        if directions.shape[0] != self.embedding.shape[-1]:
            raise ShapeMismatchError(
                f"directions of shape {tuple(directions.shape)} do not match terms of width {self.embedding.shape[-1]}"
            )
        d = directions.to(self.embedding)
        return replace(self, embedding=self.embedding @ d, mlp=self.mlp @ d, attention=self.attention @ d)

    def _require(self, axis: Axis) -> None:
        if axis in self.summed:
            raise InvalidInputError(
                f"this decomposition was summed over {axis}; decompose without summing them"
            )


@torch.no_grad()
def decompose(
    model: ClipModel,
    images: Float[Tensor, "batch 3 height width"],
    *,
    sum_over: Collection[Axis] = (),
) -> Decomposition:
    """Decompose ``model.encode_image(images)`` into mapped direct contributions (fp32).

    ``sum_over`` sums the attention terms over heads and/or source tokens while decomposing, which
    keeps memory at ``(batch, layers, 1, 1, d_embed)`` for large models. The model's eval-mode
    forward is reproduced (patch dropout is not applied).
    """
    visual = model.visual
    blocks = _check_tower(visual)
    summed = frozenset(sum_over)
    if not summed <= set(AXES):
        raise InvalidInputError(f"sum_over must name axes from {AXES}, got {sorted(summed)}")
    x = _embeds(visual, _check_images(visual, images))
    layer_inputs = []
    mlp_terms = []
    for block in blocks:
        layer_inputs.append(x)
        mid = x + block.ls_1(block.attention(q_x=block.ln_1(x)))
        mlp_out = block.ls_2(block.mlp(block.ln_2(mid)))
        mlp_terms.append(mlp_out[:, 0].float())
        x = mid + mlp_out
    n_heads, n_tokens = blocks[0].attn.num_heads, x.shape[1]
    affine = _FrozenLnPost(visual, x[:, 0].float(), n_terms=1 + len(blocks) * (1 + n_heads * n_tokens))
    attention = torch.stack(
        [affine(*_attention_terms(block, h, summed)) for block, h in zip(blocks, layer_inputs, strict=True)],
        1,
    )
    return Decomposition(
        embedding=affine(layer_inputs[0][:, 0].float(), 1),
        mlp=affine(torch.stack(mlp_terms, 1), 1),
        attention=attention,
        norm=affine.embedding_norm,
        summed=summed,
    )


def direct_effects(decomposition: Decomposition, texts: Float[Tensor, "*n_texts d_embed"]) -> Decomposition:
    """Scores ``<c_hat_j, t_hat> / ||image embedding||`` of every term for each text.

    The scores of all terms sum exactly to the cosine similarity of image and text. ``texts`` is one
    embedding ``(d_embed,)`` or many ``(n_texts, d_embed)``; the result's feature axis has one entry
    per text either way.
    """
    if texts.dim() not in (1, 2):
        raise ShapeMismatchError(f"texts must be (d_embed,) or (n_texts, d_embed), got {tuple(texts.shape)}")
    unit = F.normalize(texts.float().reshape(-1, texts.shape[-1]), dim=-1)
    return decomposition.normalized().project(unit.T)


class _FrozenLnPost:
    """``ln_post`` followed by ``proj`` with mean and std frozen at the real CLS input, spread over ``n_terms``."""

    def __init__(self, visual: ImageTower, resid: Float[Tensor, "batch width"], n_terms: int) -> None:
        ln: nn.LayerNorm = visual.ln_post
        width = resid.shape[-1]
        gamma = ln.weight.float() if ln.weight is not None else resid.new_ones(width)
        beta = ln.bias.float() if ln.bias is not None else resid.new_zeros(width)
        mu = resid.mean(-1, keepdim=True)
        sigma = (resid.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt()
        self.proj = visual.proj.float()
        self.scale = gamma / sigma  # (batch, width)
        self.offset = (beta - gamma * mu / sigma) @ self.proj / n_terms  # (batch, d_embed)
        self.embedding_norm = (((resid - mu) * self.scale + beta) @ self.proj).norm(dim=-1)

    def __call__(
        self, terms: Float[Tensor, "batch *parts width"], count: int
    ) -> Float[Tensor, "batch *parts d_embed"]:
        """Map ``terms``, each the sum of ``count`` raw terms."""
        view = (terms.shape[0], *[1] * (terms.dim() - 2), -1)
        return (terms * self.scale.view(view)) @ self.proj + count * self.offset.view(view)


def image_batches(images: Tensor, batch_size: int, device: torch.device) -> Iterator[Tensor]:
    """Consecutive slices of ``images`` of at most ``batch_size``, moved to ``device``."""
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
    return (images[start : start + batch_size].to(device) for start in range(0, images.shape[0], batch_size))


def _attention_terms(
    block: ResidualBlock, x: Float[Tensor, "batch tokens width"], summed: frozenset[Axis]
) -> tuple[Float[Tensor, "batch heads tokens width"], int]:
    """Raw attention terms at the CLS query (layer-scaled, bias spread), and how many each sums."""
    attn: nn.MultiheadAttention = block.attn
    n_heads, (batch, n_tokens, width) = attn.num_heads, x.shape
    head_dim = width // n_heads
    y = block.ln_1(x).float()
    w_q, w_k, w_v = attn.in_proj_weight.float().chunk(3)
    in_bias = attn.in_proj_bias if attn.in_proj_bias is not None else attn.in_proj_weight.new_zeros(3 * width)
    b_q, b_k, b_v = in_bias.float().chunk(3)
    q = (y[:, 0] @ w_q.T + b_q).view(batch, n_heads, head_dim)
    k = (y @ w_k.T + b_k).view(batch, n_tokens, n_heads, head_dim)
    v = (y @ w_v.T + b_v).view(batch, n_tokens, n_heads, head_dim)
    weights = torch.einsum("bhd,bnhd->bhn", q, k).mul(head_dim**-0.5).softmax(-1)
    weighted = weights[..., None] * v.permute(0, 2, 1, 3)  # (batch, heads, tokens, head_dim)
    w_o = attn.out_proj.weight.float().view(width, n_heads, head_dim)
    count = 1
    if "tokens" in summed:
        weighted, count = weighted.sum(2, keepdim=True), count * n_tokens
    terms = torch.einsum("bhnd,whd->bhnw", weighted, w_o)
    if "heads" in summed:
        terms, count = terms.sum(1, keepdim=True), count * n_heads
    bias = attn.out_proj.bias
    if bias is not None:
        terms = terms + bias.float() * count / (n_heads * n_tokens)
    return terms * _layer_scale(block.ls_1), count


def _layer_scale(module: nn.Module) -> Tensor | float:
    """The per-channel factor of an open_clip ``LayerScale`` (1 when the block has none)."""
    gamma = getattr(module, "gamma", None)
    return gamma.float() if isinstance(gamma, Tensor) else 1.0


def _embeds(visual: ImageTower, images: Tensor) -> Float[Tensor, "batch tokens width"]:
    """Patch + CLS tokens with positional embedding after ``ln_pre``, as open_clip builds them."""
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    return visual.ln_pre(x)


def _check_tower(visual: ImageTower) -> list[ResidualBlock]:
    """The tower's blocks; raises :class:`SiteError` unless it is a decomposable open_clip ViT."""
    name = type(visual).__name__
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if name != "VisionTransformer" or not isinstance(blocks, nn.ModuleList):
        raise SiteError(f"decomposition needs an open_clip VisionTransformer image tower; got {name}")
    if getattr(visual, "attn_pool", None) is not None or visual.pool_type != "tok":
        raise SiteError(
            f"decomposition needs CLS-token pooling without an attentional pooler; this tower pools with "
            f"'{visual.pool_type}'" + (" and an attentional pooler" if visual.attn_pool is not None else "")
        )
    if visual.proj is None or not isinstance(visual.ln_post, nn.LayerNorm):
        raise SiteError("decomposition needs the tower's final LayerNorm (ln_post) and projection (proj)")
    for index, block in enumerate(blocks):
        attn = getattr(block, "attn", None)
        if not isinstance(attn, nn.MultiheadAttention) or not attn.batch_first or hasattr(block, "ln_1_kv"):
            raise SiteError(
                f"block {index} is a {type(block).__name__}; decomposition supports open_clip's "
                "ResidualAttentionBlock with batch-first nn.MultiheadAttention"
            )
    return list(blocks)


def _check_images(visual: ImageTower, images: Tensor) -> Tensor:
    size = tuple(visual.image_size) if isinstance(visual.image_size, tuple) else (visual.image_size,) * 2
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ShapeMismatchError(f"images must be a (batch, 3, height, width) tensor, got {shape}")
    if tuple(images.shape[2:]) != size:
        raise ShapeMismatchError(f"images are {tuple(images.shape[2:])} pixels but the model expects {size}")
    if images.shape[0] == 0:
        raise InvalidInputError("images must not be an empty batch")
    if not images.is_floating_point():
        raise InvalidInputError(f"images must be a preprocessed float tensor, got dtype {images.dtype}")
    weight = visual.conv1.weight
    return images.to(weight.device, weight.dtype)
