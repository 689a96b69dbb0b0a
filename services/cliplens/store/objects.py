"""Object stores: one interface over S3/MinIO (the ``minio`` client) and a local directory.

``open_store(uri)`` picks the back end: ``s3://bucket/prefix`` opens S3, anything else (a plain
path or ``file://path``) a local directory. Without a URI it opens ``$CLIPLENS_STORE``, or the
embedded default, the local directory ``~/.cache/cliplens/store``.

S3 connection settings come from an explicit :class:`S3Config` or from the environment:

- ``CLIPLENS_S3_ENDPOINT``: ``host:port``, or a URL whose scheme sets TLS (``https://host``).
- ``CLIPLENS_S3_ACCESS_KEY`` / ``CLIPLENS_S3_SECRET_KEY``: the credentials.
- ``CLIPLENS_S3_SECURE``: ``true``/``false``, TLS on or off (default ``true``; an ``http://``
  endpoint turns it off).
- ``CLIPLENS_S3_REGION``: the region (optional).
- ``CLIPLENS_S3_PART_SIZE``: multipart part size in bytes (default 16 MiB, at least 5 MiB);
  objects larger than one part are uploaded in parts.

Keys are ``/``-separated paths relative to the store's root. Writes become visible atomically:
locally a temporary file is renamed into place; on S3 an object appears only when its upload
(single or multipart) completes. Listings stream in key order (``scan``), with each object's size
and version (ETag on S3, mtime in nanoseconds locally). Stores pickle (an S3 store as its bucket,
prefix and settings), so Ray workers can read and write the store the driver opened.
"""

from __future__ import annotations

import io
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from minio import Minio
from minio.error import S3Error
from minio.helpers import check_bucket_name

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.store.errors import StoreAccessError, StoreUnavailableError

STORE_ENV = "CLIPLENS_STORE"
DEFAULT_LOCAL_ROOT = Path("~/.cache/cliplens/store")
MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 16 * 1024 * 1024
TEMP_MARKER = ".tmp-"
_ACCESS_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"}
_MISSING_CODES = {"NoSuchKey", "NoSuchObject"}


@dataclass(frozen=True)
class S3Config:
    """Where and how to reach an S3-compatible server."""

    endpoint: str
    access_key: str | None = None
    secret_key: str | None = None
    secure: bool = True
    region: str | None = None
    part_size: int = DEFAULT_PART_SIZE

    def __post_init__(self) -> None:
        if not self.endpoint or "/" in self.endpoint:
            raise InvalidInputError(f"S3 endpoint must be 'host:port' without a path, got '{self.endpoint}'")
        if self.part_size < MIN_PART_SIZE:
            raise InvalidInputError(
                f"S3 part size must be at least {MIN_PART_SIZE} bytes, got {self.part_size}"
            )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> S3Config:
        """Read the ``CLIPLENS_S3_*`` variables; raise when no endpoint is set."""
        env = os.environ if environ is None else environ
        endpoint = env.get("CLIPLENS_S3_ENDPOINT", "").strip()
        if not endpoint:
            raise InvalidInputError("no S3 endpoint configured: set CLIPLENS_S3_ENDPOINT or pass an S3Config")
        secure = _parse_bool("CLIPLENS_S3_SECURE", env.get("CLIPLENS_S3_SECURE", "true"))
        for scheme, tls in (("https://", True), ("http://", False)):
            if endpoint.startswith(scheme):
                endpoint, secure = endpoint[len(scheme) :].rstrip("/"), tls
        part_size = env.get("CLIPLENS_S3_PART_SIZE", str(DEFAULT_PART_SIZE))
        if not part_size.isdigit():
            raise InvalidInputError(f"CLIPLENS_S3_PART_SIZE must be a number of bytes, got '{part_size}'")
        return cls(
            endpoint=endpoint,
            access_key=env.get("CLIPLENS_S3_ACCESS_KEY"),
            secret_key=env.get("CLIPLENS_S3_SECRET_KEY"),
            secure=secure,
            region=env.get("CLIPLENS_S3_REGION") or None,
            part_size=int(part_size),
        )


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: its key, size in bytes and version (ETag on S3, mtime_ns locally)."""

    key: str
    size: int
    version: str


class ObjectStore(ABC):
    """Bytes under ``/``-separated keys, relative to the store's root URI."""

    uri: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_file(self, key: str, path: str | Path) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The object's content; :class:`NotFoundError` when it does not exist."""

    @abstractmethod
    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of the object from ``offset`` on; :class:`NotFoundError` when missing."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """The object's size and version; :class:`NotFoundError` when it does not exist."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def scan(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose keys start with ``prefix`` (a string prefix, not only a folder) and sort
        after ``start_after``, in key order, streamed (never the whole listing at once on S3)."""

    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys that start with ``prefix`` (a string prefix, not only a folder)."""
        return [info.key for info in self.scan(prefix)]

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    def child(self, prefix: str) -> ObjectStore:
        """A view of this store rooted at ``prefix``."""
        return _PrefixedStore(self, _check_key(prefix.strip("/")) + "/")


class LocalStore(ObjectStore):
    """A local directory; each key is a file below ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._atomic_target(key) as temp:
            temp.write_bytes(data)

    def put_file(self, key: str, path: str | Path) -> None:
        with self._atomic_target(key) as temp, open(path, "rb") as source, open(temp, "wb") as target:
            while chunk := source.read(1024 * 1024):
                target.write(chunk)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError(f"object '{key}' not found in {self.uri}") from None

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as handle:
                handle.seek(offset)
                return handle.read(length)
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError(f"object '{key}' not found in {self.uri}") from None

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        if not path.is_file():
            raise NotFoundError(f"object '{key}' not found in {self.uri}")
        status = path.stat()
        return ObjectInfo(key, status.st_size, str(status.st_mtime_ns))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def scan(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        _check_prefix(prefix)
        folder = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        for key, entry in self._walk(self.root / folder, folder, start_after):
            if key.startswith(prefix) and key > start_after:
                status = entry.stat()
                yield ObjectInfo(key, status.st_size, str(status.st_mtime_ns))

    def _walk(self, directory: Path, folder: str, start_after: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """Files below ``directory`` in key order: one directory's entries in memory at a time,
        sorted as their keys sort (a sub-folder as ``name/``); sub-folders wholly before
        ``start_after`` are not entered."""
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        named = sorted((entry.name + "/" if entry.is_dir() else entry.name, entry) for entry in entries)
        for name, entry in named:
            key = folder + name
            if entry.is_dir():
                if key > start_after or start_after.startswith(key):
                    yield from self._walk(Path(entry.path), key, start_after)
            elif entry.is_file() and TEMP_MARKER not in name:
                yield key, entry

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    @contextmanager
    def _atomic_target(self, key: str) -> Iterator[Path]:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(f".{final.name}{TEMP_MARKER}{uuid.uuid4().hex}")
        try:
            yield temp
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)


class S3Store(ObjectStore):
    """A bucket (and optional key prefix) on an S3-compatible server, through the ``minio`` client.

    The bucket is created when missing; this first request also checks the credentials.
    """

    def __init__(self, bucket: str, prefix: str = "", config: S3Config | None = None) -> None:
        self.config = config or S3Config.from_env()
        try:
            check_bucket_name(bucket, strict=True)
        except ValueError as exc:
            raise InvalidInputError(
                f"invalid S3 bucket name '{bucket}' ({exc}): use 3-63 lowercase letters, digits, "
                "hyphens and dots, as in s3://my-bucket/prefix"
            ) from None
        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.uri = f"s3://{bucket}/{self.prefix}"
        self.client = Minio(
            self.config.endpoint,
            access_key=self.config.access_key,
            secret_key=self.config.secret_key,
            secure=self.config.secure,
            region=self.config.region,
            http_client=urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=5, read=60),
                retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
            ),
        )
        with self._errors(f"bucket '{bucket}'"):
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket)

    def __reduce__(self) -> tuple[Any, ...]:
        return (S3Store, (self.bucket, self.prefix, self.config))

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._errors(key):
            self.client.put_object(
                self.bucket, self._name(key), io.BytesIO(data), len(data), part_size=self.config.part_size
            )

    def put_file(self, key: str, path: str | Path) -> None:
        with self._errors(key):
            self.client.fput_object(self.bucket, self._name(key), str(path), part_size=self.config.part_size)

    def get_bytes(self, key: str) -> bytes:
        return self._get(key, 0, 0)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self._get(key, offset, length) if length > 0 else b""

    def _get(self, key: str, offset: int, length: int) -> bytes:
        """The object's bytes from ``offset`` on: ``length`` of them, or all with ``length`` 0."""
        with self._errors(key):
            response = self.client.get_object(self.bucket, self._name(key), offset=offset, length=length)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def stat(self, key: str) -> ObjectInfo:
        with self._errors(key):
            status = self.client.stat_object(self.bucket, self._name(key))
        return ObjectInfo(key, int(status.size or 0), str(status.etag))

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFoundError:
            return False
        return True

    def scan(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        with self._errors(f"listing '{prefix}'"):
            objects = self.client.list_objects(
                self.bucket,
                prefix=self.prefix + prefix,
                recursive=True,
                start_after=self.prefix + start_after if start_after else None,
            )
            for obj in objects:
                if obj.object_name and not obj.is_dir:
                    yield ObjectInfo(obj.object_name[len(self.prefix) :], int(obj.size or 0), str(obj.etag))

    def delete(self, key: str) -> None:
        with self._errors(key):
            self.client.remove_object(self.bucket, self._name(key))

    def _name(self, key: str) -> str:
        return self.prefix + _check_key(key)

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate minio and connection failures into cliplens errors naming the object."""
        try:
            yield
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                raise NotFoundError(f"object '{what}' not found in {self.uri}") from None
            if exc.code in _ACCESS_CODES:
                raise StoreAccessError(
                    f"S3 server {self.config.endpoint} rejected access to {what} in {self.uri} "
                    f"(access key '{self.config.access_key}'): {exc.code}"
                ) from None
            raise
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreUnavailableError(
                f"S3 server {self.config.endpoint} is unreachable ({what} in {self.uri}): {exc}"
            ) from exc


class _PrefixedStore(ObjectStore):
    def __init__(self, parent: ObjectStore, prefix: str) -> None:
        self.parent, self.prefix = parent, prefix
        self.uri = parent.uri.rstrip("/") + "/" + prefix

    def put_bytes(self, key: str, data: bytes) -> None:
        self.parent.put_bytes(self.prefix + _check_key(key), data)

    def put_file(self, key: str, path: str | Path) -> None:
        self.parent.put_file(self.prefix + _check_key(key), path)

    def get_bytes(self, key: str) -> bytes:
        return self.parent.get_bytes(self.prefix + _check_key(key))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self.parent.read_range(self.prefix + _check_key(key), offset, length)

    def stat(self, key: str) -> ObjectInfo:
        info = self.parent.stat(self.prefix + _check_key(key))
        return ObjectInfo(key, info.size, info.version)

    def exists(self, key: str) -> bool:
        return self.parent.exists(self.prefix + _check_key(key))

    def scan(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        after = self.prefix + start_after if start_after else ""
        for info in self.parent.scan(self.prefix + prefix, after):
            yield ObjectInfo(info.key[len(self.prefix) :], info.size, info.version)

    def delete(self, key: str) -> None:
        self.parent.delete(self.prefix + _check_key(key))


def open_store(uri: str | Path | None = None, s3: S3Config | None = None) -> ObjectStore:
    """The store at ``uri`` (``s3://bucket/prefix``, ``file://path`` or a path); see the module doc."""
    if uri is None:
        uri = os.environ.get(STORE_ENV) or DEFAULT_LOCAL_ROOT
    text = str(uri)
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://") :].partition("/")
        return S3Store(bucket, prefix, s3)
    if "://" in text and not text.startswith("file://"):
        raise InvalidInputError(f"unsupported store URI '{text}': use s3://bucket/prefix or a local path")
    return LocalStore(text.removeprefix("file://"))


def open_object(uri: str | Path, s3: S3Config | None = None) -> tuple[ObjectStore, str]:
    """Split an object URI into the store holding it and the key within: ``(store, key)``."""
    text = str(uri).rstrip("/")
    if text.startswith("s3://"):
        bucket, _, key = text[len("s3://") :].partition("/")
        return S3Store(bucket, "", s3), key
    path = Path(text.removeprefix("file://")).expanduser().resolve()
    if path.is_dir():
        return LocalStore(path), ""
    return LocalStore(path.parent), path.name


def _check_key(key: str) -> str:
    if not key or any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidInputError(f"invalid object key '{key}': use a relative path without '.', '..' or '//'")
    return key


def _check_prefix(prefix: str) -> None:
    if prefix.strip("/"):
        _check_key(prefix.strip("/"))


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise InvalidInputError(f"{name} must be true or false, got '{value}'")
