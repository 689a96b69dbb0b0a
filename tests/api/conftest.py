"""Unit tier: the serve layer's API classes against fakes of the deployments, without Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import catalog_store

from cliplens.store import LocalStore


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return catalog_store(tmp_path / "store")
