"""Small encoded images for requests."""

from __future__ import annotations

import io

from PIL import Image

from cliplens_client.v1 import common_pb2


def png(size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def image(data: bytes | None = None) -> common_pb2.Image:
    return common_pb2.Image(data=png() if data is None else data)
