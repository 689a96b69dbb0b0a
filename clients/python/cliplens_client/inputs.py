"""Caller-side input types (images, latent edits), their conversion into request messages, and the
checks of the other arguments the client validates before it sends a call."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

import numpy.typing as npt

from cliplens_client.arrays import pack_array
from cliplens_client.errors import InvalidRequestError
from cliplens_client.v1 import attribution_pb2, common_pb2, sae_pb2

MAX_IMAGE_BYTES = 16 * 1024 * 1024
JPEG_PNG_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
# Bounds of the heads rpcs, as attribution.proto states them (0 asks for the server's default).
MAX_POOL = 10_000  # DescribeHeadsRequest.pool
MAX_PER_HEAD = 20  # DescribeHeadsRequest.per_head
MAX_CLASS_NAMES = 1_000  # RankHeadsRequest.class_names (2 at least)
MAX_RANK_IMAGES = 5_000  # RankHeadsRequest.max_images
MAX_RANKED_HEADS = 1_000  # RankHeadsRequest.top_n


@dataclass(frozen=True)
class ObjectKey:
    """An image stored in the server's configured bucket, e.g. ``ObjectKey("cifar10/test/00042.png")``."""

    key: str


ImageInput: TypeAlias = "bytes | os.PathLike[str] | ObjectKey"
"""Encoded JPEG/PNG/WebP bytes, a path to such a file, or a bucket key."""

EditOp = Literal["add", "subtract", "clamp"]
EDIT_OPS: dict[str, attribution_pb2.EditOp] = {
    "add": attribution_pb2.EDIT_OP_ADD,
    "subtract": attribution_pb2.EDIT_OP_SUBTRACT,
    "clamp": attribution_pb2.EDIT_OP_CLAMP,
}


@dataclass(frozen=True)
class LatentEdit:
    """Change latent ``latent``'s activation z: ``add`` gives z + value, ``subtract`` z - value, ``clamp`` value."""

    latent: int
    op: EditOp
    value: float

    def to_proto(self) -> attribution_pb2.LatentEdit:
        if self.latent < 0:
            raise InvalidRequestError(f"latent index must be >= 0, got {self.latent}")
        if self.op not in EDIT_OPS:
            raise InvalidRequestError(f"edit op must be one of {', '.join(EDIT_OPS)}, got {self.op!r}")
        if not math.isfinite(self.value):
            raise InvalidRequestError(f"edit value of latent {self.latent} must be finite, got {self.value}")
        return attribution_pb2.LatentEdit(latent=self.latent, op=EDIT_OPS[self.op], value=self.value)


def image_message(image: ImageInput) -> common_pb2.Image:
    """The ``Image`` message of bytes, a file path or a bucket key (a plain ``str`` is refused as ambiguous)."""
    if isinstance(image, ObjectKey):
        if not image.key or "://" in image.key:
            raise InvalidRequestError(f"object key must be a non-empty bucket key, not a URL: {image.key!r}")
        return common_pb2.Image(object_key=image.key)
    if isinstance(image, str):
        raise InvalidRequestError(
            f"ambiguous image {image!r}: pass pathlib.Path(...) for a file or ObjectKey(...) for a bucket key"
        )
    if isinstance(image, os.PathLike):
        path = Path(image)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidRequestError(f"cannot read image file {path}: {exc.strerror}") from None
        return common_pb2.Image(data=_checked_image_bytes(data, str(path)))
    if isinstance(image, bytes | bytearray | memoryview):
        return common_pb2.Image(data=_checked_image_bytes(bytes(image), "image bytes"))
    raise InvalidRequestError(f"an image must be bytes, a path or an ObjectKey, got {type(image).__name__}")


def image_messages(images: Sequence[ImageInput]) -> list[common_pb2.Image]:
    if isinstance(images, str | bytes) or not images:
        raise InvalidRequestError("images must be a non-empty sequence of images")
    return [image_message(image) for image in images]


def sae_input(activations: npt.ArrayLike | None, images: Sequence[ImageInput] | None) -> sae_pb2.SaeInput:
    """Exactly one of: activations of shape ``(..., d_in)``, or images to encode up to the SAE's site."""
    if images is not None and activations is None:
        return sae_pb2.SaeInput(images=common_pb2.ImageBatch(images=image_messages(images)))
    if activations is None or images is not None:
        raise InvalidRequestError("pass exactly one of activations= or images=")
    packed = pack_array(activations)
    if len(packed.shape) < 1 or math.prod(packed.shape) == 0:
        raise InvalidRequestError(
            f"activations must have shape (..., d_in) with rows, got {tuple(packed.shape)}"
        )
    return sae_pb2.SaeInput(activations=packed)


def non_empty_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    """``texts`` as a list, refusing a bare string, an empty list and blank entries."""
    if isinstance(texts, str):
        raise InvalidRequestError(f"{what} must be a sequence of strings, not a single string")
    if not texts:
        raise InvalidRequestError(f"{what} must not be empty")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequestError(f"{what}[{index}] must be a non-empty string, got {text!r}")
    return list(texts)


def non_empty_string(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"{what} must be a non-empty string, got {value!r}")
    return value


def bounded_int(value: int, what: str, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidRequestError(f"{what} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise InvalidRequestError(f"{what} must be an integer <= {maximum}, got {value!r}")
    return value


def optional_texts(texts: Sequence[str], what: str, minimum: int, maximum: int) -> list[str]:
    """None (the server's default) or ``minimum`` to ``maximum`` non-empty strings."""
    if not isinstance(texts, str) and not texts:
        return []
    checked = non_empty_texts(texts, what)
    if not minimum <= len(checked) <= maximum:
        raise InvalidRequestError(f"{what} must hold {minimum} to {maximum} entries, got {len(checked)}")
    return checked


def _checked_image_bytes(data: bytes, name: str) -> bytes:
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidRequestError(f"{name} is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES}")
    is_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if not is_webp and not data.startswith(JPEG_PNG_SIGNATURES):
        raise InvalidRequestError(f"{name} is not a JPEG, PNG or WebP file (starts with {data[:8]!r})")
    return data
