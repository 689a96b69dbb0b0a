"""Errors of the storage layer, subclassing the core's so callers map them the same way."""

from __future__ import annotations

from cliplens.core.errors import CliplensError, InvalidInputError, NotFoundError


class StoreAccessError(CliplensError, PermissionError):
    """The object store rejected the credentials or denied the operation."""


class StoreUnavailableError(CliplensError, ConnectionError):
    """The object store or Redis could not be reached."""


class RunNotCommittedError(NotFoundError):
    """An activation run has no ``manifest.json``: it is missing or still being written."""


class RunIncompleteError(InvalidInputError):
    """``commit()`` was called while some shards of the run are not written yet."""
