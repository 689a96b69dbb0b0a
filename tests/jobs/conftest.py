"""Job tests: the session servers of tests/fixtures_servers.py (shared with tests/store)."""

from fixtures_servers import redis_server, s3_config, s3_server

__all__ = ["redis_server", "s3_config", "s3_server"]
