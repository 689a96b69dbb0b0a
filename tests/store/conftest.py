"""Store tests: a store fixture over both back ends (the servers come from tests/fixtures_servers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cliplens.store import LocalStore, ObjectStore
from fixtures_servers import s3_store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return s3_store(request.getfixturevalue("s3_config"))
