"""Robust image decoding: bytes -> an RGB PIL image, or the reason to skip the input.

Grayscale, palette, CMYK and 16-bit images are converted to 8-bit RGB, transparency is
composited on white, and the EXIF orientation is applied. Images larger than ``max_pixels`` are
rejected from the header alone, before any pixel data is decoded (Pillow itself refuses images
above twice ``Image.MAX_IMAGE_PIXELS`` whatever ``max_pixels`` says).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000
_HIGH_DEPTH_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


@dataclass(frozen=True)
class Skipped:
    """Why an input was not decoded."""

    reason: str


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image | Skipped:
    """Decode ``data`` into an RGB image, or return :class:`Skipped` naming what is wrong with it."""
    if not data:
        return Skipped("empty input: zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return Skipped("not an image: the bytes are in no known image format")
    except Image.DecompressionBombError as exc:
        return Skipped(f"image too large: {exc}")
    except Exception as exc:
        return Skipped(f"unreadable image header: {exc}")
    width, height = image.size
    if width * height > max_pixels:
        return Skipped(
            f"image too large: {width}x{height} = {width * height} pixels exceeds the limit {max_pixels}"
        )
    try:
        image.load()
        return _to_rgb(ImageOps.exif_transpose(image))
    except Exception as exc:
        return Skipped(f"truncated or corrupt image data ({image.format}): {exc}")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _HIGH_DEPTH_MODES:
        pixels = np.asarray(image, dtype=np.float64)
        scaled = np.clip(np.round(pixels * 255.0 / 65535.0), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")
