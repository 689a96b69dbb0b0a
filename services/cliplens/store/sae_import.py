"""Bringing peer SAEs into the SAE catalog: fetch the files (local, S3 or an already-downloaded hub
copy), convert them with :mod:`cliplens.core.sae.interop` and save them with their provenance."""

from __future__ import annotations

import os
from pathlib import Path

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.sae.interop import ImportOptions, PeerSae, peer_format
from cliplens.store.objects import ObjectStore, open_object
from cliplens.store.saes import SaeRecord, check_sae_id, save_sae_to_store

HUB_PREFIX = "hub:"


def import_sae(
    store: ObjectStore,
    sae_id: str,
    path: str | Path,
    *,
    fmt: str,
    model_id: str,
    site: str | None = None,
    origin: str | None = None,
    options: ImportOptions | None = None,
) -> tuple[SaeRecord, PeerSae]:
    """Convert the ``fmt`` SAE at ``path`` and save it as ``sae_id``; ``origin`` (default ``path``) is
    the original location recorded as its source; ``options`` give what the checkpoint does not record."""
    check_sae_id(sae_id)
    peer = peer_format(fmt).read(path, model_id=model_id, site=site, options=options)
    source = peer.source | {"path": str(origin or Path(path).resolve())}
    return save_sae_to_store(store, sae_id, peer.sae, source=source), peer


def fetch_source(source: str, into: Path) -> Path:
    """A local directory holding the files of ``source``: the directory itself when local, else a copy
    under ``into`` (S3: every object under the key prefix), or the hub's local cache."""
    if source.startswith(HUB_PREFIX):
        return _hub_cache(source)
    if source.startswith("s3://"):
        objects, prefix = open_object(source)
        keys = objects.list(f"{prefix.rstrip('/')}/")
        if not keys:
            raise NotFoundError(f"no objects under {source}")
        for key in keys:
            target = into / key[len(prefix) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(objects.get_bytes(key))
        return into
    local = Path(source.removeprefix("file://")).expanduser()
    if not local.is_dir():
        raise NotFoundError(f"SAE source {source} is not a directory")
    return local


def _hub_cache(source: str) -> Path:
    """``hub:<org>/<repo>/<path>`` from the Hugging Face cache, which only a download elsewhere fills."""
    parts = source[len(HUB_PREFIX) :].strip("/").split("/")
    if len(parts) < 2 or not all(parts):
        raise InvalidInputError(f"hub source must be 'hub:<org>/<repo>[/<path>]', got '{source}'")
    repo, inner = parts[:2], parts[2:]
    cache = Path(
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"
    ).expanduser()
    snapshots = cache / f"models--{repo[0]}--{repo[1]}" / "snapshots"
    found = (
        sorted(path for path in snapshots.glob("*/" + "/".join(inner)) if path.is_dir())
        if snapshots.is_dir()
        else []
    )
    if not found:
        raise NotFoundError(
            f"{source}: the Hugging Face hub is not reachable from here (no network) and no copy is in "
            f"{snapshots}; download it elsewhere and point the registry entry at the local directory "
            "(or an s3:// copy)"
        )
    return found[-1]
