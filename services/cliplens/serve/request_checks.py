"""Validation of request fields; each failure is an :class:`InvalidInputError` naming the field."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.serve.actor_types import RequestImage
from cliplens.serve.settings import Limits
from cliplens.store import ObjectStore, Skipped, decode_image
from cliplens.store.input_shards import FOLDER_IMAGE_SUFFIXES
from cliplens_client.arrays import unpack_array
from cliplens_client.errors import MalformedResponseError
from cliplens_client.v1 import common_pb2, sae_pb2

_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


class RequestImages:
    """Turns ``Image`` messages into encoded bytes: inline data or a key in the image bucket."""

    def __init__(self, limits: Limits, bucket: ObjectStore | None) -> None:
        self.limits = limits
        self.bucket = bucket

    def read(self, field: str, image: common_pb2.Image) -> bytes:
        """The encoded bytes of ``image``; URLs are never fetched."""
        source = image.WhichOneof("source")
        if source == "data":
            data = image.data
        elif source == "object_key":
            data = self._read_key(field, image.object_key)
        else:
            raise InvalidInputError(f"{field}: set either data or object_key")
        check_image_bytes(field, data, self.limits)
        return data

    async def fetch(self, field: str, image: common_pb2.Image) -> RequestImage:
        """The bytes of ``image`` with its field, reading bucket keys off the event loop."""
        if image.WhichOneof("source") == "object_key":
            return RequestImage(field, await asyncio.to_thread(self.read, field, image))
        return RequestImage(field, self.read(field, image))

    async def fetch_all(self, field: str, images: Sequence[common_pb2.Image]) -> list[RequestImage]:
        """Every image of a repeated field (``max_images`` at most)."""
        check_count(field, len(images), self.limits.max_images)
        return [await self.fetch(f"{field}[{i}]", image) for i, image in enumerate(images)]

    def _read_key(self, field: str, key: str) -> bytes:
        if self.bucket is None:
            raise InvalidInputError(f"{field}.object_key: this server has no image bucket configured")
        check_key(f"{field}.object_key", key)
        # An image folder's input ids (``cliplens index``) are its file names without the suffix.
        suffixes = [suffix for lower in FOLDER_IMAGE_SUFFIXES for suffix in (lower, lower.upper())]
        for candidate in (key, *(key + suffix for suffix in suffixes)):
            if self.bucket.exists(candidate):
                return self.bucket.get_bytes(candidate)
        raise NotFoundError(f"{field}.object_key: no image '{key}' in the image bucket")


def check_key(field: str, key: str) -> str:
    """A relative key of an object store: no scheme, no leading '/', no '..'."""
    if not key or "://" in key or key.startswith("/") or ".." in key.split("/"):
        raise InvalidInputError(f"{field}: {key!r} is not a key (no scheme, no leading '/')")
    return key


def check_image_bytes(field: str, data: bytes, limits: Limits) -> None:
    if not data:
        raise InvalidInputError(f"{field}: empty image (zero bytes)")
    if len(data) > limits.max_image_bytes:
        raise InvalidInputError(f"{field}: {len(data)} bytes exceeds the limit of {limits.max_image_bytes}")
    if not (
        any(data.startswith(magic) for magic in _MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
    ):
        raise InvalidInputError(f"{field}: not a JPEG, PNG or WebP image")


def decode_rgb(field: str, data: bytes, max_pixels: int) -> Image.Image:
    """Decode checked bytes into an RGB image, or raise naming ``field`` and what is wrong."""
    image = decode_image(data, max_pixels)
    if isinstance(image, Skipped):
        raise InvalidInputError(f"{field}: {image.reason}")
    return image


def check_count(field: str, count: int, maximum: int, minimum: int = 1) -> None:
    if not minimum <= count <= maximum:
        raise InvalidInputError(f"{field}: give {minimum} to {maximum} entries, got {count}")


def check_texts(
    field: str, texts: Sequence[str], max_count: int, max_chars: int, minimum: int = 1
) -> list[str]:
    check_count(field, len(texts), max_count, minimum)
    for i, text in enumerate(texts):
        check_text(f"{field}[{i}]", text, max_chars)
    return list(texts)


def check_text(field: str, text: str, max_chars: int) -> str:
    if not text.strip():
        raise InvalidInputError(f"{field}: must not be empty")
    if len(text) > max_chars:
        raise InvalidInputError(f"{field}: {len(text)} characters exceeds the limit of {max_chars}")
    return text


def bounded(field: str, value: int, default: int, maximum: int) -> int:
    """``value`` or, when 0, ``default``; raises unless the result is in ``[1, maximum]``."""
    value = value or default
    if not 1 <= value <= maximum:
        raise InvalidInputError(f"{field}: must be 1 to {maximum} (0 means {default}), got {value}")
    return value


def float_array(
    field: str, message: common_pb2.FloatArray, max_rows: int, width: int
) -> npt.NDArray[np.float32]:
    """The array of ``message`` as float32 ``(..., width)``; at most ``max_rows`` rows, finite values."""
    if message.dtype == common_pb2.DTYPE_UNSPECIFIED:
        raise InvalidInputError(f"{field}.dtype: must be DTYPE_FLOAT32 or DTYPE_FLOAT16")
    try:
        array = unpack_array(message).astype(np.float32)
    except MalformedResponseError as exc:
        raise InvalidInputError(f"{field}: {exc}") from None
    if array.ndim < 1 or array.shape[-1] != width:
        raise InvalidInputError(f"{field}: shape {array.shape} must end in the width {width}")
    rows = int(np.prod(array.shape[:-1]))
    if not 1 <= rows <= max_rows:
        raise InvalidInputError(f"{field}: {rows} rows; give 1 to {max_rows}")
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{field}: values must be finite")
    return array


def dense_latents(request: sae_pb2.DecodeRequest, d_sae: int, max_rows: int) -> npt.NDArray[np.float32]:
    """A DecodeRequest's latents as a dense ``(n, d_sae)`` array, from its dense or sparse form."""
    kind = request.WhichOneof("latents")
    if kind == "dense":
        dense = float_array("dense", request.dense, max_rows, d_sae)
        if dense.ndim != 2:
            raise InvalidInputError(f"dense: shape {dense.shape} must be (n, {d_sae})")
        return dense
    if kind != "sparse":
        raise InvalidInputError("latents: set either dense or sparse")
    sparse = request.sparse
    if sparse.d_sae != d_sae:
        raise InvalidInputError(f"sparse.d_sae: {sparse.d_sae} differs from the SAE's {d_sae} latents")
    check_count("sparse.rows", len(sparse.rows), max_rows)
    dense = np.zeros((len(sparse.rows), d_sae), np.float32)
    for i, row in enumerate(sparse.rows):
        indices = np.asarray(row.indices, dtype=np.int64)
        if len(row.values) != indices.size:
            raise InvalidInputError(f"sparse.rows[{i}]: {indices.size} indices but {len(row.values)} values")
        if indices.size and (indices[-1] >= d_sae or np.any(np.diff(indices) <= 0)):
            raise InvalidInputError(f"sparse.rows[{i}].indices: must increase strictly and be < {d_sae}")
        dense[i, indices] = row.values
    if not np.isfinite(dense).all():
        raise InvalidInputError("sparse: values must be finite")
    return dense
