"""The Ray Data stages of ``cliplens extract``: decode, resize, crop (tasks) and encode (actors).

Rows flow as numpy batches with columns ``key``, ``label``, ``shard``, ``reason`` (empty when the
image decoded) plus ``pixels`` after decoding, replaced by one ``site<i>`` column per site after
encoding. Rows of skipped inputs keep flowing (with zero pixels and activations) so that the
driver sees every input of a shard and can write it with its skip reasons.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cliplens.core.models import ModelSpec, PixelSteps, load_clip
from cliplens.core.sites import encode_images
from cliplens.store.decoding import Skipped, decode_image

Batch = dict[str, np.ndarray]
PASSED_COLUMNS = ("key", "label", "shard", "reason")


def site_column(index: int) -> str:
    return f"site{index}"


def decode_batch(batch: Batch, pixel_steps: PixelSteps, image_size: int, max_pixels: int) -> Batch:
    """Decode, resize and crop every image of ``batch`` into uint8 pixels (normalised later, by the
    encoder, a batch at once); undecodable ones get their skip reason."""
    pixels = np.zeros((len(batch["key"]), 3, image_size, image_size), np.uint8)
    reasons = []
    for row, data in enumerate(batch["data"]):
        image = decode_image(bytes(data) if data is not None else b"", max_pixels)
        if isinstance(image, Skipped):
            reasons.append(image.reason)
            continue
        reasons.append("")
        pixels[row] = pixel_steps.pixels(image).numpy()
    return {
        "key": batch["key"],
        "label": batch["label"],
        "shard": batch["shard"],
        "reason": np.array(reasons, dtype=object),
        "pixels": pixels,
    }


class SiteEncoder:
    """An actor holding the model: encodes a batch once and returns every site's activations (fp16)."""

    def __init__(
        self,
        spec: ModelSpec,
        sites: Sequence[str],
        row_shapes: Sequence[tuple[int, ...]],
        dtype: str,
        use_gpu: bool,
        torch_threads: int,
    ) -> None:
        torch.set_num_threads(torch_threads)
        self.clip = load_clip(spec, device="cuda" if use_gpu else "cpu", dtype=dtype)
        self.sites, self.row_shapes = list(sites), [tuple(s) for s in row_shapes]

    def __call__(self, batch: Batch) -> Batch:
        good = batch["reason"] == ""
        out = {name: batch[name] for name in PASSED_COLUMNS}
        columns = [np.zeros((len(good), *shape), np.float16) for shape in self.row_shapes]
        if good.any():
            pixels = self.clip.normalise_pixels(torch.from_numpy(batch["pixels"][good]))
            with torch.no_grad():
                captured = encode_images(self.clip.model, pixels, self.sites)
            for column, site in zip(columns, self.sites, strict=True):
                column[good] = captured[site].to("cpu", torch.float16).numpy()
        out.update({site_column(i): column for i, column in enumerate(columns)})
        return out
