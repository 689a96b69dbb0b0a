"""Store tests: the session servers (tests/fixtures_servers.py) and a store fixture over both back ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from cliplens.store import LocalStore, ObjectStore
from fixtures_servers import redis_server, s3_config, s3_server, s3_store

# Re-exported: the session fixtures (see tests/fixtures_servers.py) and s3_store for the test modules.
__all__ = ["redis_server", "s3_config", "s3_server", "s3_store"]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return s3_store(request.getfixturevalue("s3_config"))
