"""Plain results that deployments return to the ingress (numpy and dataclasses, no protobuf)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]
Label = tuple[str, float]  # (label text, alignment)


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
