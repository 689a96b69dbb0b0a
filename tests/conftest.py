"""Shared fixtures: tiny random-weight open_clip models, the demo model and the CIFAR-10 data.

The suite reads only repository files: the ``shared_guard`` plugin fails the run if a test reads
``../shared`` (the CI machine's data folder, which a user's clone does not have).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cliplens.core.models import LoadedClip, load_clip
from cliplens.store.sample import SAMPLE_PARQUET
from tiny_models import tiny_spec

# Real redis-server and SeaweedFS (S3) session fixtures, shared by every test folder; the guard that
# fails the run when a test reads ../shared (tests/shared_guard.py); the test tiers (tests/tiers.py).
pytest_plugins = ["fixtures_servers", "shared_guard", "tiers"]

ROOT = Path(__file__).resolve().parents[1]
HELDOUT_PARQUET = ROOT / "tests" / "data" / "cifar10-test-heldout-64.parquet"


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> LoadedClip:
    torch.manual_seed(0)
    return load_clip(tiny_spec(tmp_path_factory.mktemp("tiny")), device="cpu")


@pytest.fixture(scope="session")
def demo_clip() -> LoadedClip:
    return load_clip("demo", device="cpu")


@pytest.fixture(scope="session")
def cifar_sample() -> Path:
    """The shipped CIFAR-10 sample: the test split's first 2,000 rows (key, jpg, label)."""
    return SAMPLE_PARQUET


@pytest.fixture(scope="session")
def cifar_heldout() -> Path:
    """64 CIFAR-10 test images outside the sample (rows 5000-5063; tests/data/README.md)."""
    return HELDOUT_PARQUET


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
