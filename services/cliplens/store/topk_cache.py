"""Redis cache of each SAE latent's top-k activating inputs, with per-latent statistics.

Redis is only a cache: the durable copy is the top-k parquet in the object store
(:mod:`cliplens.store.topk_results`), and :meth:`TopKCache.rebuild` refills Redis from it.
Reads return ``None`` (a miss) when Redis is down or holds nothing for the SAE, so callers
fall back to the store; writes raise :class:`StoreUnavailableError`.

Connection: a ``redis://[:password@]host:port/db`` or ``rediss://`` (TLS) URL, by default
``$CLIPLENS_REDIS_URL`` or ``redis://127.0.0.1:6379/0``.

Key schema (version prefix ``cliplens:v1``; ``{sae}`` is the SAE id, ``{latent}`` a decimal index):

- ``cliplens:v1:sae:{sae}`` (hash): ``k`` (entries kept per latent), ``d_sae``, ``ready`` (``1`` once
  filled). Reads treat a missing hash as a miss.
- ``cliplens:v1:topk:{sae}:{latent}`` (sorted set): member = input key, score = activation; at most
  ``k`` members, updated with ``ZADD ... GT`` and trimmed with ``ZREMRANGEBYRANK``. Ties order by
  key, larger first.
- ``cliplens:v1:labels:{sae}`` (hash): input key -> label, for every key that entered a top-k set.
- ``cliplens:v1:stats:{sae}:{latent}`` (hash): ``fires`` (inputs where the latent is > 0), ``rows``
  (inputs seen), ``histogram`` (JSON ``{"edges": [...], "counts": [...]}``) and ``label:{label}`` ->
  count of firing inputs with that label.
- ``cliplens:v1:filling:{sae}`` (string with a TTL): held while one process refills the SAE from the
  store, so that replicas noticing the same cold cache fill it once.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
import redis.asyncio
from torch import Tensor

from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.store.errors import StoreUnavailableError
from cliplens.store.topk_results import TopKRow

REDIS_URL_ENV = "CLIPLENS_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
KEY_PREFIX = "cliplens:v1"
PIPELINE_COMMANDS = 2000
_SAE_ID = re.compile(r"^[A-Za-z0-9._-]+$")
_log = logging.getLogger(__name__)
# One round trip for a lookup: the SAE's ready flag, the latent's best ARGV[1] + 1 members with their
# scores, and those members' labels. Returns nil (a miss) until the SAE is marked ready.
TOP_SCRIPT = """
if not redis.call('HGET', KEYS[1], 'ready') then return nil end
local members = redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]), 'WITHSCORES')
local keys = {}
for i = 1, #members, 2 do keys[#keys + 1] = members[i] end
local labels = {}
if #keys > 0 then labels = redis.call('HMGET', KEYS[3], unpack(keys)) end
return {members, labels}
"""
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class TopKEntry:
    key: str
    activation: float
    label: str | None


@dataclass(frozen=True)
class LatentStats:
    fires: int
    rows: int
    histogram_edges: list[float] = field(default_factory=list)
    histogram_counts: list[int] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)


class TopKCache:
    """Top-k activating inputs per (SAE, latent) in Redis; see the module doc for the key schema."""

    def __init__(self, url: str | None = None, *, k: int = 16, timeout_s: float = 2.0) -> None:
        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        self.k = k
        self.client = redis.Redis.from_url(
            _redis_url(url), socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        self._top_script = self.client.register_script(TOP_SCRIPT)

    def update(
        self,
        sae_id: str,
        keys: Sequence[str],
        activations: Tensor,
        labels: Sequence[str | None] | None = None,
    ) -> None:
        """Merge one batch of SAE activations ``(rows, d_sae)`` of inputs ``keys`` into the top-k sets.

        Only positive activations enter; call :meth:`mark_ready` after the last batch.
        """
        _check_sae_id(sae_id)
        if activations.ndim != 2 or activations.shape[0] != len(keys):
            raise ShapeMismatchError(
                f"activations must be (rows={len(keys)}, d_sae), got {tuple(activations.shape)}"
            )
        if labels is not None and len(labels) != len(keys):
            raise ShapeMismatchError(f"{len(labels)} labels for {len(keys)} keys")
        values, rows = activations.float().topk(min(self.k, len(keys)), dim=0)
        rows_by_latent = [
            TopKRow(latent, rank, keys[row], value, labels[row] if labels else None)
            for latent, (latent_values, latent_rows) in enumerate(
                zip(values.T.tolist(), rows.T.tolist(), strict=True)
            )
            for rank, (value, row) in enumerate(zip(latent_values, latent_rows, strict=True))
            if value > 0
        ]
        self._merge(sae_id, rows_by_latent)

    def rebuild(
        self, sae_id: str, rows: Iterable[TopKRow], d_sae: int, stats: Sequence[LatentStats] = ()
    ) -> None:
        """Replace everything cached for ``sae_id`` with ``rows`` and per-latent ``stats`` (e.g. read from
        the durable parquet); the SAE is marked ready last, so no reader sees it half filled."""
        _check_sae_id(sae_id)
        self.clear(sae_id)
        for chunk in _chunks(rows, PIPELINE_COMMANDS):
            self._merge(sae_id, chunk)
        for latents in _chunks(enumerate(stats), PIPELINE_COMMANDS // 2):
            self._write(functools.partial(_stats_commands, sae_id=sae_id, latents=latents))
        self.mark_ready(sae_id, d_sae)

    def is_ready(self, sae_id: str) -> bool:
        """Whether the SAE's cache is filled; raises :class:`StoreUnavailableError` if Redis is down."""
        _check_sae_id(sae_id)
        try:
            return bool(self.client.hget(_sae_key(sae_id), "ready"))
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis cache unavailable: {exc}") from exc

    def claim_fill(self, sae_id: str, ttl_s: int) -> bool:
        """Take the SAE's fill lock for ``ttl_s`` seconds: False when another process holds it."""
        _check_sae_id(sae_id)
        try:
            return bool(self.client.set(_fill_key(sae_id), os.getpid(), nx=True, ex=ttl_s))
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis cache unavailable: {exc}") from exc

    def release_fill(self, sae_id: str) -> None:
        self._write(lambda pipe: pipe.delete(_fill_key(sae_id)))

    def mark_ready(self, sae_id: str, d_sae: int) -> None:
        """Declare the SAE's cache complete; reads answer from it from now on."""
        self._write(
            lambda pipe: pipe.hset(_sae_key(sae_id), mapping={"k": self.k, "d_sae": d_sae, "ready": 1})
        )

    def clear(self, sae_id: str) -> None:
        """Delete every key of ``sae_id``."""
        _check_sae_id(sae_id)
        patterns = [f"{KEY_PREFIX}:{kind}:{sae_id}:*" for kind in ("topk", "stats")]
        singles = [_sae_key(sae_id), _labels_key(sae_id)]
        try:
            doomed = singles + [
                key for pattern in patterns for key in self.client.scan_iter(match=pattern, count=1000)
            ]
            for chunk in _chunks(doomed, PIPELINE_COMMANDS):
                self.client.delete(*chunk)
        except redis.RedisError as exc:
            raise StoreUnavailableError(
                f"Redis cache unavailable while clearing SAE '{sae_id}': {exc}"
            ) from exc

    def set_stats(self, sae_id: str, latent: int, stats: LatentStats) -> None:
        _check_sae_id(sae_id)
        self._write(functools.partial(_stats_commands, sae_id=sae_id, latents=[(latent, stats)]))

    def top(self, sae_id: str, latent: int, n: int | None = None) -> list[TopKEntry] | None:
        """The latent's top entries, highest first; ``None`` on a miss (Redis down or not filled)."""
        _check_sae_id(sae_id)
        try:
            found = self._top_script(keys=_top_keys(sae_id, latent), args=[(n or self.k) - 1])
        except redis.RedisError as exc:
            _log.warning("top-k cache miss for %s latent %d: %s", sae_id, latent, exc)
            return None
        return _entries(found)

    def stats(self, sae_id: str, latent: int) -> LatentStats | None:
        """The latent's statistics; ``None`` on a miss."""
        _check_sae_id(sae_id)
        try:
            raw = self.client.hgetall(_stats_key(sae_id, latent))
        except redis.RedisError as exc:
            _log.warning("stats cache miss for %s latent %d: %s", sae_id, latent, exc)
            return None
        return _stats(raw)

    def _merge(self, sae_id: str, rows: Sequence[TopKRow]) -> None:
        by_latent: dict[int, dict[str, float]] = {}
        labels: dict[Any, Any] = {row.key: row.label for row in rows if row.label is not None}
        for row in rows:
            by_latent.setdefault(row.latent, {})[row.key] = row.activation

        def commands(pipe: redis.client.Pipeline) -> None:
            for latent, scores in by_latent.items():
                key = _topk_key(sae_id, latent)
                pipe.zadd(key, scores, gt=True)
                pipe.zremrangebyrank(key, 0, -(self.k + 1))
            if labels:
                pipe.hset(_labels_key(sae_id), mapping=labels)

        self._write(commands)

    def _write(self, commands: Callable[[redis.client.Pipeline], object]) -> None:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                commands(pipe)
                pipe.execute()
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis cache unavailable for writing: {exc}") from exc


class AsyncTopKReader:
    """The read side of :class:`TopKCache` on ``redis.asyncio``, for servers on an event loop."""

    def __init__(self, url: str | None = None, *, k: int = 16, timeout_s: float = 2.0) -> None:
        self.k = k
        self.client = redis.asyncio.Redis.from_url(
            _redis_url(url), socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        self._top_script = self.client.register_script(TOP_SCRIPT)

    async def top(self, sae_id: str, latent: int, n: int | None = None) -> list[TopKEntry] | None:
        """As :meth:`TopKCache.top`."""
        _check_sae_id(sae_id)

        async def lookup() -> list[TopKEntry] | None:
            return _entries(await self._top_script(keys=_top_keys(sae_id, latent), args=[(n or self.k) - 1]))

        return await self._read(lookup, f"top-k cache miss for {sae_id} latent {latent}")

    async def stats(self, sae_id: str, latent: int) -> LatentStats | None:
        """As :meth:`TopKCache.stats`."""
        _check_sae_id(sae_id)

        async def lookup() -> LatentStats | None:
            return _stats(await self.client.hgetall(_stats_key(sae_id, latent)))

        return await self._read(lookup, f"stats cache miss for {sae_id} latent {latent}")

    async def _read(self, lookup: Callable[[], Awaitable[R]], miss: str) -> R | None:
        """``lookup()``, tried again once on a connection error (a pooled connection that outlived a
        Redis restart fails once; asyncio pipelines do not retry it); ``None`` when Redis fails."""
        for attempt in (1, 2):
            try:
                return await lookup()
            except redis.ConnectionError as exc:
                if attempt == 2:
                    _log.warning("%s: %s", miss, exc)
            except redis.RedisError as exc:
                _log.warning("%s: %s", miss, exc)
                break
        return None


def _redis_url(url: str | None) -> str:
    url = url or os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise InvalidInputError(f"Redis URL must start with redis://, rediss:// or unix://, got '{url}'")
    return url


def _sae_key(sae_id: str) -> str:
    return f"{KEY_PREFIX}:sae:{sae_id}"


def _labels_key(sae_id: str) -> str:
    return f"{KEY_PREFIX}:labels:{sae_id}"


def _topk_key(sae_id: str, latent: int) -> str:
    return f"{KEY_PREFIX}:topk:{sae_id}:{latent}"


def _stats_key(sae_id: str, latent: int) -> str:
    return f"{KEY_PREFIX}:stats:{sae_id}:{latent}"


def _fill_key(sae_id: str) -> str:
    return f"{KEY_PREFIX}:filling:{sae_id}"


def _stats_commands(
    pipe: redis.client.Pipeline, *, sae_id: str, latents: Iterable[tuple[int, LatentStats]]
) -> None:
    """Replace each latent's stats hash."""
    for latent, stats in latents:
        mapping: dict[Any, Any] = {
            "fires": stats.fires,
            "rows": stats.rows,
            "histogram": json.dumps({"edges": stats.histogram_edges, "counts": stats.histogram_counts}),
            **{f"label:{label}": count for label, count in stats.label_counts.items()},
        }
        key = _stats_key(sae_id, latent)
        pipe.delete(key)
        pipe.hset(key, mapping=mapping)


def _top_keys(sae_id: str, latent: int) -> list[str]:
    return [_sae_key(sae_id), _topk_key(sae_id, latent), _labels_key(sae_id)]


def _entries(found: list[Any] | None) -> list[TopKEntry] | None:
    """Entries from :data:`TOP_SCRIPT`'s answer (None: a miss; str values: the clients decode)."""
    if found is None:
        return None
    members, labels = found
    pairs = zip(members[::2], members[1::2], strict=True)
    return [TopKEntry(key, float(score), label) for (key, score), label in zip(pairs, labels, strict=True)]


def _stats(raw: dict[Any, Any]) -> LatentStats | None:
    """Statistics from a stats hash (str keys and values: the clients decode responses)."""
    if not raw:
        return None
    histogram = json.loads(raw.get("histogram", "{}"))
    return LatentStats(
        fires=int(raw["fires"]),
        rows=int(raw["rows"]),
        histogram_edges=histogram.get("edges", []),
        histogram_counts=histogram.get("counts", []),
        label_counts={k.removeprefix("label:"): int(v) for k, v in raw.items() if k.startswith("label:")},
    )


def _check_sae_id(sae_id: str) -> None:
    if not _SAE_ID.match(sae_id):
        raise InvalidInputError(f"invalid SAE id '{sae_id}': use letters, digits, '.', '_' or '-'")


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
