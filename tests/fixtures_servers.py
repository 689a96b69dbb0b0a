"""Session-wide real servers: one redis-server and one SeaweedFS S3, for tests/store and tests/jobs.

The conftests of those folders import the fixtures; with ``pytest_plugins = ["fixtures_servers"]``
in tests/conftest.py instead, both folders would share one pair of servers per session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cliplens.store import S3Config, S3Store
from cliplens.store.local_stack import S3_ACCESS_KEY, S3_SECRET_KEY, RedisServer, SeaweedS3


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_config(s3_server: SeaweedS3) -> S3Config:
    return S3Config(s3_server.endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, secure=False, part_size=5 * 1024 * 1024)


def s3_store(config: S3Config) -> S3Store:
    """A store in a fresh bucket, so tests never see each other's objects."""
    return S3Store(f"t-{uuid.uuid4().hex[:12]}", "data", config)
