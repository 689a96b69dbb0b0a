"""Shared fixtures: tiny random-weight open_clip models, the demo model and the CIFAR-10 data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cliplens.core.models import LoadedClip, load_clip
from tiny_models import tiny_spec

# Real redis-server and SeaweedFS (S3) session fixtures, shared by every test folder.
pytest_plugins = ["fixtures_servers"]

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10"


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
def ray_metrics_port() -> int:
    """Where the session's Ray exports Prometheus metrics (what a Prometheus would scrape)."""
    from cliplens.store.local_stack import free_ports

    return free_ports(1)[0]


@pytest.fixture(scope="session")
def ray_session(ray_metrics_port: int) -> Iterator[None]:
    """One local Ray for the whole test session (jobs and Serve tests share it)."""
    import ray

    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _metrics_export_port=ray_metrics_port,
    )
    try:
        yield
    finally:
        ray.shutdown()
