"""The types that cross actor boundaries: what the ingress sends to deployments and what they return.

Plain frozen dataclasses of numbers, strings and numpy arrays: no protobuf (its classes do not pickle
through ``.bind()``), no torch tensors (they would pin a device). The head results are the core's
own dataclasses of that kind (in the store's cache wrapper), re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cliplens.core.decomposition.heads import HeadDescriptions, HeadRanking
from cliplens.store.head_results import CachedHeads

__all__ = ["CachedHeads", "HeadDescriptions", "HeadRanking"]

Floats = npt.NDArray[np.float32]
Label = tuple[str, float]  # (label text, alignment)
Neighbour = tuple[int, float]  # (latent, decoder cosine)


@dataclass(frozen=True)
class RequestImage:
    """An encoded image of a request and the request field it came in (errors name the field)."""

    field: str
    data: bytes


@dataclass(frozen=True)
class ModelFacts:
    """What ListModels reports about a loaded model."""

    model_id: str
    arch: str
    description: str
    embed_dim: int
    image_size: int
    n_layers: int
    patch_grid: int


@dataclass(frozen=True)
class SparseRows:
    """Per row: latent indices (strictly increasing) and their activations."""

    d_sae: int
    indices: list[npt.NDArray[np.uint32]]
    values: list[npt.NDArray[np.float32]]


@dataclass(frozen=True)
class Reconstructed:
    """An SAE's reconstruction of rows, and their latents when asked for."""

    reconstruction: Floats
    latents: SparseRows | None


@dataclass(frozen=True)
class LatentShare:
    latent: int
    activation: float
    attribution: float
    labels: list[Label] = field(default_factory=list)
    patch_map: Floats | None = None


@dataclass(frozen=True)
class TextShare:
    text: str
    score: float
    latents: list[LatentShare]
    error_attribution: float
    error_share: float


@dataclass(frozen=True)
class AttributionResult:
    texts: list[TextShare]
    patch_grid: int


@dataclass(frozen=True)
class LayerShare:
    attention: float
    mlp: float
    heads: list[float]


@dataclass(frozen=True)
class DecompositionResult:
    score: float
    embedding: float
    layers: list[LayerShare]
    patch_heatmap: Floats


@dataclass(frozen=True)
class SteeringResult:
    original: Floats
    steered: Floats
    before: list[float]
    after: list[float]


@dataclass(frozen=True)
class LatentMatchResult:
    latent: int
    alignment: float
    labels: list[Label]
