"""Test tiers: ``unit`` (no servers, no Ray: `make test-fast`), ``integration`` (real Redis, S3, Ray,
Serve, helm) and ``e2e`` (whole commands as subprocesses). A test's folder gives its tier; a test or
module outside those folders, or an exception inside one, carries its own marker."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TIERS = {
    "api": "unit",
    "client": "unit",
    "core": "unit",
    "web": "unit",
    "store": "integration",
    "jobs": "integration",
    "serve": "integration",
    "deploy": "integration",
    "e2e": "e2e",
}
MARKERS = ("unit", "integration", "e2e")


def tier_of(item: pytest.Item) -> str:
    """The test's own tier marker, else its folder's tier; raises when it has neither or several."""
    own = [name for name in MARKERS if item.get_closest_marker(name)]
    if len(own) > 1:
        raise pytest.UsageError(f"{item.nodeid}: has several tier markers {own}")
    if own:
        return own[0]
    folder = Path(str(item.path)).relative_to(TESTS).parts[0]
    if folder not in TIERS:
        raise pytest.UsageError(f"{item.nodeid}: mark it with one of {', '.join(MARKERS)}")
    return TIERS[folder]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier_of(item))
