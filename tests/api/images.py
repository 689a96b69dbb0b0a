"""Image messages for requests."""

from __future__ import annotations

from cliplens_client.v1 import common_pb2
from image_bytes import png


def image(data: bytes | None = None) -> common_pb2.Image:
    return common_pb2.Image(data=png() if data is None else data)
