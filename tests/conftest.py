"""Shared fixtures: tiny random-weight open_clip models, the demo model and the CIFAR-10 data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cliplens.core.models import LoadedClip, ModelSpec, load_clip

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10"

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


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> LoadedClip:
    torch.manual_seed(0)
    return load_clip(tiny_spec(tmp_path_factory.mktemp("tiny")), device="cpu")


@pytest.fixture(scope="session")
def demo_clip() -> LoadedClip:
    return load_clip("demo", device="cpu")


@pytest.fixture(scope="session")
def shared_cifar() -> Path:
    if not (SHARED_CIFAR / "cifar10-test.parquet").is_file():
        pytest.fail(f"CIFAR-10 parquet files not found in {SHARED_CIFAR}")
    return SHARED_CIFAR


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole test session (jobs and Serve tests share it)."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()
