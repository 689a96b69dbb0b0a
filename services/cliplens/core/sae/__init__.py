"""Sparse autoencoders: configs, modules, the architecture registry and checkpoints."""

from cliplens.core.sae.checkpoint import SaeCheckpoint, config_from_dict, config_to_dict, load_sae, save_sae
from cliplens.core.sae.config import (
    BatchTopKConfig,
    JumpReluConfig,
    MatryoshkaConfig,
    ReluConfig,
    SaeConfig,
    TopKConfig,
)
from cliplens.core.sae.modules import (
    BatchTopKSae,
    JumpReluSae,
    MatryoshkaSae,
    ReluSae,
    Sae,
    SaeLoss,
    TopKSae,
    nearest_latents,
)
from cliplens.core.sae.registry import ARCHITECTURES, build_sae, config_class, make_config

__all__ = [
    "ARCHITECTURES",
    "BatchTopKConfig",
    "BatchTopKSae",
    "JumpReluConfig",
    "JumpReluSae",
    "MatryoshkaConfig",
    "MatryoshkaSae",
    "ReluConfig",
    "ReluSae",
    "Sae",
    "SaeCheckpoint",
    "SaeConfig",
    "SaeLoss",
    "TopKConfig",
    "TopKSae",
    "build_sae",
    "config_class",
    "config_from_dict",
    "config_to_dict",
    "load_sae",
    "make_config",
    "nearest_latents",
    "save_sae",
]
