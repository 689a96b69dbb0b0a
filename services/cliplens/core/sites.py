"""Activation sites of the image encoder, and one-pass capture and editing of them.

Site strings:

- ``final``: the image embedding after the projection, before normalisation, ``(batch, d_embed)``.
- ``resid:L``: residual stream after block ``L`` (0-based), CLS token, ``(batch, width)``.
- ``resid:L:patches``: the same block's patch tokens, ``(batch, n_patches, width)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

from cliplens.core.errors import SiteError

SiteEdit = Callable[[Tensor], Tensor]
# open_clip's towers expose their parts as dynamic attributes (visual.transformer.resblocks, ...).
ImageTower = Any
ClipModel = Any


@dataclass(frozen=True)
class Site:
    """A parsed activation site; ``str(site)`` gives back the canonical string."""

    kind: Literal["final", "resid"]
    layer: int | None = None
    patches: bool = False

    @classmethod
    def parse(cls, text: str | Site) -> Site:
        if isinstance(text, Site):
            return text
        parts = str(text).strip().split(":")
        if parts == ["final"]:
            return cls("final")
        if parts[0] == "resid" and len(parts) in (2, 3) and parts[1].isdigit():
            if len(parts) == 3 and parts[2] != "patches":
                raise SiteError(f"malformed site '{text}': the third part must be 'patches'")
            return cls("resid", int(parts[1]), patches=len(parts) == 3)
        raise SiteError(f"malformed site '{text}'; expected 'final', 'resid:L' or 'resid:L:patches' (L >= 0)")

    def __str__(self) -> str:
        if self.kind == "final":
            return "final"
        return f"resid:{self.layer}" + (":patches" if self.patches else "")

    def width(self, visual: ImageTower) -> int:
        """Width of one activation vector at this site for the given image tower."""
        self.check(visual)
        if self.kind == "final":
            return int(visual.output_dim)
        return int(visual.transformer.width)

    def check(self, visual: ImageTower) -> None:
        """Raise :class:`SiteError` unless this site exists in ``visual``."""
        if self.kind == "final":
            return
        blocks = _resblocks(visual, self)
        if self.layer is None or not 0 <= self.layer < len(blocks):
            raise SiteError(
                f"site '{self}' is out of range: the image tower has {len(blocks)} blocks (0..{len(blocks) - 1})"
            )
        if not self.patches and getattr(visual, "pool_type", "tok") != "tok":
            raise SiteError(
                f"site '{self}' needs a CLS token, but this image tower pools with '{visual.pool_type}'"
            )


@dataclass
class SiteActivations:
    """The image embedding and the activations captured in the same forward pass."""

    embedding: Float[Tensor, "batch d_embed"]
    activations: dict[str, Tensor]

    def __getitem__(self, site: str | Site) -> Tensor:
        return self.activations[str(Site.parse(site))]


def encode_images(
    model: ClipModel,
    images: Float[Tensor, "batch 3 height width"],
    sites: Sequence[str | Site] = (),
    edits: Mapping[str | Site, SiteEdit] | None = None,
) -> SiteActivations:
    """Encode ``images`` once, returning the embedding and every requested site's activations.

    ``edits`` maps sites to functions that replace the site's value on the way through (the SAE
    splice, ablations); captures at a site record the value *before* its edit.
    """
    visual = model.visual
    parsed = [Site.parse(s) for s in sites]
    parsed_edits = {Site.parse(s): fn for s, fn in (edits or {}).items()}
    for site in [*parsed, *parsed_edits]:
        site.check(visual)
    captured: dict[str, Tensor] = {}
    with _resid_hooks(visual, parsed, parsed_edits, captured):
        embedding = model.encode_image(images)
    final = Site("final")
    if final in parsed:
        captured["final"] = embedding
    if final in parsed_edits:
        embedding = parsed_edits[final](embedding)
    return SiteActivations(embedding, {str(s): captured[str(s)] for s in parsed})


def _resblocks(visual: ImageTower, site: Site) -> nn.ModuleList:
    transformer = getattr(visual, "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise SiteError(
            f"site '{site}' needs an open_clip VisionTransformer image tower; got {type(visual).__name__}"
        )
    return blocks


def _token_slice(site: Site) -> slice:
    return slice(1, None) if site.patches else slice(0, 1)


@contextlib.contextmanager
def _resid_hooks(
    visual: ImageTower,
    sites: Sequence[Site],
    edits: Mapping[Site, SiteEdit],
    captured: dict[str, Tensor],
) -> Iterator[None]:
    by_layer: dict[int, list[Site]] = {}
    for site in {*sites, *edits}:
        if site.kind == "resid" and site.layer is not None:
            by_layer.setdefault(site.layer, []).append(site)
    batch_first = getattr(visual.transformer, "batch_first", True)
    capture_set = set(sites)

    def make_hook(layer_sites: list[Site]) -> Callable[[nn.Module, object, Tensor], Tensor]:
        def hook(_module: nn.Module, _inputs: object, output: Tensor) -> Tensor:
            tokens = output if batch_first else output.transpose(0, 1)
            for site in sorted(layer_sites, key=lambda s: s.patches):
                part = tokens[:, _token_slice(site)]
                value = part if site.patches else part[:, 0]
                if site in capture_set:
                    captured[str(site)] = value
                if site in edits:
                    new = edits[site](value)
                    tokens = torch.cat(
                        [new[:, None], tokens[:, 1:]] if not site.patches else [tokens[:, :1], new], dim=1
                    )
            return tokens if batch_first else tokens.transpose(0, 1)

        return hook

    blocks = _resblocks(visual, next(iter({*sites, *edits}))) if by_layer else None
    handles = (
        [blocks[layer].register_forward_hook(make_hook(group)) for layer, group in by_layer.items()]
        if blocks
        else []
    )
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def to_embedding_space(visual: ImageTower, site: str | Site, vectors: Float[Tensor, "*n width"]) -> Tensor:
    """Map vectors living at ``site`` into the image-embedding space (the logit-lens map).

    ``final`` vectors are already there; residual-stream vectors go through ``ln_post`` and ``proj``
    as if they were the last block's CLS output.
    """
    parsed = Site.parse(site)
    width = parsed.width(visual)
    if vectors.shape[-1] != width:
        raise SiteError(
            f"vectors of width {vectors.shape[-1]} do not live at site '{parsed}' (width {width})"
        )
    if parsed.kind == "final":
        return vectors
    mapped = visual.ln_post(vectors.to(visual.proj.dtype))
    return mapped @ visual.proj
