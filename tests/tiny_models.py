"""Tiny random-weight open_clip configs for fast tests."""

from __future__ import annotations

import json
from pathlib import Path

from cliplens.core.models import ModelSpec

TINY_VIT = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_spec(directory: Path, name: str = "cliplens-test-tiny-vit", cfg: dict | None = None) -> ModelSpec:
    """Write an open_clip config for a tiny ViT CLIP and return a spec with random weights."""
    path = directory / f"{name}.json"
    path.write_text(json.dumps(cfg or TINY_VIT))
    return ModelSpec(id=name, arch=name, config=str(path))
