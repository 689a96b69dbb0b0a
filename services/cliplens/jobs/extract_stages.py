"""The Ray Data stages of ``cliplens extract``: decode + preprocess (tasks) and encode (actors).

Rows flow as numpy batches with columns ``key``, ``label``, ``shard``, ``reason`` (empty when the
image decoded) plus ``pixels`` after decoding, replaced by one ``site<i>`` column per site after
encoding. Rows of skipped inputs keep flowing (with zero pixels and activations) so that the
driver sees every input of a shard and can write it with its skip reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from cliplens.core.models import ModelSpec, load_clip
from cliplens.core.sites import encode_images
from cliplens.store.decoding import Skipped, decode_image

Batch = dict[str, np.ndarray]
PASSED_COLUMNS = ("key", "label", "shard", "reason")


def site_column(index: int) -> str:
    return f"site{index}"


def decode_batch(
    batch: Batch, preprocess: Callable[[Image.Image], Tensor], image_size: int, max_pixels: int
) -> Batch:
    """Decode and preprocess every image of ``batch``; undecodable ones get their skip reason."""
    pixels = np.zeros((len(batch["key"]), 3, image_size, image_size), np.float32)
    reasons = []
    for row, data in enumerate(batch["data"]):
        image = decode_image(bytes(data) if data is not None else b"", max_pixels)
        if isinstance(image, Skipped):
            reasons.append(image.reason)
            continue
        reasons.append("")
        pixels[row] = preprocess(image).numpy()
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
            pixels = torch.from_numpy(batch["pixels"][good]).to(self.clip.device, self.clip.dtype)
            with torch.no_grad():
                captured = encode_images(self.clip.model, pixels, self.sites)
            for column, site in zip(columns, self.sites, strict=True):
                column[good] = captured[site].to("cpu", torch.float16).numpy()
        out.update({site_column(i): column for i, column in enumerate(columns)})
        return out
