"""The registry of SAEs that ``cliplens saes pull`` can fetch: SAE id -> where it lives and how to read it.

The shipped file is ``assets/saes.json``; ``$CLIPLENS_SAES`` names an extra file whose entries are
added (and override). Each entry::

    "my-sae": {"source": "<local path | s3://bucket/key | hub:<org>/<repo>/<path>>",
               "format": "saelens", "model": "<model id>", "site": "resid:10"}

``site`` is optional when the files say it; a relative local path resolves beside the registry file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cliplens.core.errors import InvalidInputError, NotFoundError

DEFAULT_SAE_REGISTRY = Path(__file__).resolve().parents[2] / "assets" / "saes.json"
SAE_REGISTRY_ENV = "CLIPLENS_SAES"
REMOTE_PREFIXES = ("s3://", "hub:")


@dataclass(frozen=True)
class SaeSource:
    """Where one registered SAE lives and what it was trained on."""

    id: str
    source: str
    format: str
    model: str
    site: str | None = None
    description: str = ""


class SaeSourceRegistry:
    """SAE ids -> :class:`SaeSource`, read from a JSON file."""

    def __init__(self, sources: Mapping[str, SaeSource]) -> None:
        self._sources = dict(sources)

    @classmethod
    def from_file(cls, path: str | Path) -> SaeSourceRegistry:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise NotFoundError(f"SAE registry file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"SAE registry {path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise InvalidInputError(f"SAE registry {path} must hold a JSON object of SAE ids")
        return cls({sae_id: _entry(path, sae_id, entry) for sae_id, entry in raw.items()})

    @classmethod
    def default(cls) -> SaeSourceRegistry:
        """The shipped registry, extended (and overridden) by the file named in ``$CLIPLENS_SAES``."""
        registry = cls.from_file(DEFAULT_SAE_REGISTRY)
        extra = os.environ.get(SAE_REGISTRY_ENV)
        return registry.merged(cls.from_file(extra)) if extra else registry

    def merged(self, other: SaeSourceRegistry) -> SaeSourceRegistry:
        return SaeSourceRegistry({**self._sources, **other._sources})

    def ids(self) -> list[str]:
        return sorted(self._sources)

    def get(self, sae_id: str) -> SaeSource:
        try:
            return self._sources[sae_id]
        except KeyError:
            known = ", ".join(self.ids()) or f"none (add some with ${SAE_REGISTRY_ENV})"
            raise NotFoundError(
                f"unknown SAE id '{sae_id}' in the SAE registry; registered ids: {known}"
            ) from None


def _entry(path: Path, sae_id: str, entry: Any) -> SaeSource:
    where = f"SAE registry {path}: entry '{sae_id}'"
    if not isinstance(entry, dict):
        raise InvalidInputError(f"{where} must be a JSON object")
    missing = [key for key in ("source", "format", "model") if not isinstance(entry.get(key), str)]
    if missing:
        raise InvalidInputError(f"{where} has no {', '.join(repr(key) for key in missing)} (strings)")
    source = entry["source"]
    if not source.startswith(REMOTE_PREFIXES):
        local = Path(source.removeprefix("file://")).expanduser()
        source = str(local if local.is_absolute() else path.parent / local)
    site = entry.get("site")
    return SaeSource(
        id=sae_id,
        source=source,
        format=entry["format"],
        model=entry["model"],
        site=None if site is None else str(site),
        description=str(entry.get("description", "")),
    )
