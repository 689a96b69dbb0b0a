"""One frozen config type per SAE architecture (the fields each architecture needs, no more)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields
from typing import ClassVar

from cliplens.core.errors import InvalidInputError


@dataclass(frozen=True, kw_only=True)
class SaeConfig:
    """Fields shared by every architecture.

    ``d_in`` is the width of the activation site and ``d_sae`` the number of latents.
    ``model_id``, ``site`` and ``dataset_id`` record what the SAE was trained on.
    ``aux_k`` > 0 turns on the AuxK loss: the residual error is reconstructed from the top
    ``aux_k`` pre-activations among dead latents, weighted by ``aux_coeff``.
    """

    arch: ClassVar[str] = ""
    d_in: int
    d_sae: int
    model_id: str = ""
    site: str = "final"
    dataset_id: str = ""
    aux_k: int = 0
    aux_coeff: float = 1.0 / 32.0

    def __post_init__(self) -> None:
        if self.d_in <= 0 or self.d_sae <= 0:
            raise InvalidInputError(
                f"d_in and d_sae must be positive, got d_in={self.d_in}, d_sae={self.d_sae}"
            )
        if not 0 <= self.aux_k <= self.d_sae:
            raise InvalidInputError(f"aux_k must be in [0, d_sae={self.d_sae}], got {self.aux_k}")

    @property
    def expansion(self) -> float:
        return self.d_sae / self.d_in

    def hyperparameters(self) -> dict[str, float]:
        """The architecture's numeric training hyperparameters by name: the fields its config class
        declares beyond the shared ones (a shared field it redeclares, as TopK does ``aux_k``, counts)."""
        declared = {
            name
            for cls in type(self).__mro__
            if issubclass(cls, SaeConfig) and cls is not SaeConfig
            for name in inspect.get_annotations(cls)
        }
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name in declared}
        return {
            name: float(value)
            for name, value in values.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }


@dataclass(frozen=True, kw_only=True)
class ReluConfig(SaeConfig):
    """ReLU latents with an L1 penalty on activations (decoder rows are unit norm)."""

    arch: ClassVar[str] = "relu"
    l1_coeff: float = 1e-3


@dataclass(frozen=True, kw_only=True)
class TopKConfig(SaeConfig):
    """Keep the ``k`` largest pre-activations of each row (then ReLU)."""

    arch: ClassVar[str] = "topk"
    k: int = 32
    aux_k: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.k <= self.d_sae:
            raise InvalidInputError(f"k must be in [1, d_sae={self.d_sae}], got {self.k}")


@dataclass(frozen=True, kw_only=True)
class BatchTopKConfig(TopKConfig):
    """Top ``k * batch`` over the whole batch while training; a learned threshold at inference.

    ``threshold_momentum`` is the EMA rate of the threshold estimate (the smallest kept
    activation of each training batch).
    """

    arch: ClassVar[str] = "batchtopk"
    threshold_momentum: float = 0.01


@dataclass(frozen=True, kw_only=True)
class JumpReluConfig(SaeConfig):
    """``z = pre * [pre > theta]`` with learned per-latent ``theta`` and an L0 penalty (STE)."""

    arch: ClassVar[str] = "jumprelu"
    l0_coeff: float = 1e-2
    bandwidth: float = 0.05
    init_threshold: float = 0.05


@dataclass(frozen=True, kw_only=True)
class MatryoshkaConfig(BatchTopKConfig):
    """BatchTopK whose loss sums the reconstruction errors of nested dictionary prefixes.

    ``prefixes`` are increasing prefix sizes ending at ``d_sae``; empty means
    ``d_sae/16, d_sae/8, d_sae/4, d_sae/2, d_sae``.
    """

    arch: ClassVar[str] = "matryoshka"
    prefixes: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.prefixes:
            object.__setattr__(self, "prefixes", tuple(max(1, self.d_sae // d) for d in (16, 8, 4, 2, 1)))
        object.__setattr__(self, "prefixes", tuple(int(p) for p in self.prefixes))
        sizes = self.prefixes
        if list(sizes) != sorted(set(sizes)) or sizes[-1] != self.d_sae or sizes[0] <= 0:
            raise InvalidInputError(
                f"prefixes must increase strictly and end at d_sae={self.d_sae}, got {sizes}"
            )
