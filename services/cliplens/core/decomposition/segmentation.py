"""Zero-shot segmentation from patch contributions, and a synthetic pasted-object benchmark for it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from cliplens.core.decomposition.decompose import PER_TOKEN, decompose, direct_effects, image_batches
from cliplens.core.errors import InvalidInputError, ShapeMismatchError
from cliplens.core.sites import ClipModel


@dataclass(frozen=True)
class PastedObjects:
    """Canvases tiled from images of other classes with one downscaled target image pasted in a box."""

    canvases: Float[Tensor, "n 3 size size"]
    labels: Int[Tensor, " n"]
    boxes: Int[Tensor, "n 4"]  # top, left, height, width

    def box_masks(self) -> Bool[Tensor, "n size size"]:
        height, width = self.canvases.shape[-2:]
        rows, cols = torch.arange(height), torch.arange(width)
        top, left, box_h, box_w = self.boxes.unbind(1)
        inside_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
        inside_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
        return inside_rows[:, :, None] & inside_cols[:, None, :]


@dataclass(frozen=True)
class SegmentationScores:
    """Pointing-game accuracy, mean IoU of the thresholded masks, and the box-area chance rate."""

    n_images: int
    pointing_accuracy: float
    mean_iou: float
    chance_rate: float


@torch.no_grad()
def class_heatmaps(
    model: ClipModel,
    images: Float[Tensor, "batch 3 height width"],
    text_embeddings: Float[Tensor, "n_texts d_embed"],
) -> Float[Tensor, "batch n_texts height width"]:
    """Per-pixel scores of each candidate text: patch terms summed over layers and heads, scored
    against the text's unit embedding minus the mean of the other candidates', upsampled bilinearly."""
    if text_embeddings.dim() != 2 or text_embeddings.shape[0] < 2:
        raise InvalidInputError(
            f"segmentation needs at least two candidate text embeddings (n_texts, d_embed), got {tuple(text_embeddings.shape)}"
        )
    unit = F.normalize(text_embeddings.float(), dim=-1)
    n = unit.shape[0]
    others_mean = (unit.sum(0, keepdim=True) - unit) / (n - 1)
    patches = direct_effects(decompose(model, images, sum_over=PER_TOKEN), unit - others_mean).per_patch()
    grid_h, grid_w = model.visual.grid_size
    grid = patches.transpose(1, 2).reshape(patches.shape[0], n, grid_h, grid_w)
    return F.interpolate(grid, size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False)


def heatmap_masks(heatmaps: Float[Tensor, "*batch height width"]) -> Bool[Tensor, "*batch height width"]:
    """Each heatmap thresholded at its own mean."""
    return heatmaps > heatmaps.mean((-2, -1), keepdim=True)


def score_heatmaps(
    heatmaps: Float[Tensor, "n height width"], boxes: Bool[Tensor, "n height width"]
) -> SegmentationScores:
    """Pointing game (is each heatmap's maximum inside the box?) and IoU of the mean-threshold masks."""
    if heatmaps.shape != boxes.shape or heatmaps.dim() != 3:
        raise ShapeMismatchError(
            f"heatmaps {tuple(heatmaps.shape)} and box masks {tuple(boxes.shape)} must both be (n, height, width)"
        )
    flat_boxes = boxes.flatten(1)
    hits = flat_boxes.gather(1, heatmaps.flatten(1).argmax(1, keepdim=True)).squeeze(1)
    masks = heatmap_masks(heatmaps).flatten(1)
    iou = (masks & flat_boxes).sum(1) / (masks | flat_boxes).sum(1).clamp(min=1)
    return SegmentationScores(
        n_images=int(heatmaps.shape[0]),
        pointing_accuracy=float(hits.float().mean()),
        mean_iou=float(iou.mean()),
        chance_rate=float(flat_boxes.float().mean()),
    )


@torch.no_grad()
def evaluate_segmentation(
    model: ClipModel,
    objects: PastedObjects,
    classifier: Float[Tensor, "n_classes d_embed"],
    batch_size: int = 64,
) -> SegmentationScores:
    """Score the heatmaps of each canvas's target class (among all classes of ``classifier``)."""
    device = next(model.parameters()).device
    maps = []
    for batch, labels in zip(
        image_batches(objects.canvases, batch_size, device), objects.labels.split(batch_size), strict=True
    ):
        heatmaps = class_heatmaps(model, batch, classifier)
        maps.append(heatmaps[torch.arange(len(labels)), labels.to(device)].cpu())
    return score_heatmaps(torch.cat(maps), objects.box_masks())


def paste_objects(
    images: Float[Tensor, "m 3 size size"],
    labels: Int[Tensor, " m"],
    n: int,
    *,
    object_size: int,
    tiles_per_side: int = 2,
    seed: int = 0,
) -> PastedObjects:
    """``n`` canvases, each tiled from ``tiles_per_side**2`` downscaled images whose classes differ from
    the target's, with a target image downscaled to ``object_size`` pasted at a random place.

    Deterministic for a given ``seed``; canvases have the images' (square) size.
    """
    size = _check_paste_inputs(images, labels, n, object_size, tiles_per_side)
    generator = torch.Generator().manual_seed(seed)
    tile = size // tiles_per_side
    tiles = _resize(images, tile)
    targets_small = _resize(images, object_size)
    canvases = torch.empty(n, 3, size, size, dtype=images.dtype)
    targets = torch.randint(len(images), (n,), generator=generator)
    corners = torch.randint(size - object_size + 1, (n, 2), generator=generator)
    for i, (target, (top, left)) in enumerate(zip(targets.tolist(), corners.tolist(), strict=True)):
        others = (labels != labels[target]).nonzero().squeeze(1)
        picks = others[torch.randint(len(others), (tiles_per_side**2,), generator=generator)]
        rows = [
            torch.cat(list(tiles[picks[r * tiles_per_side : (r + 1) * tiles_per_side]]), dim=2)
            for r in range(tiles_per_side)
        ]
        canvases[i] = torch.cat(rows, dim=1)
        canvases[i, :, top : top + object_size, left : left + object_size] = targets_small[target]
    boxes = torch.cat([corners, torch.full((n, 2), object_size)], dim=1)
    return PastedObjects(canvases, labels[targets].clone(), boxes)


def _resize(images: Tensor, size: int) -> Tensor:
    return F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True).to(images.dtype)


def _check_paste_inputs(images: Tensor, labels: Tensor, n: int, object_size: int, tiles_per_side: int) -> int:
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ShapeMismatchError(f"images must be square (m, 3, size, size), got {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ShapeMismatchError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
    if labels.unique().numel() < 2:
        raise InvalidInputError("the images must come from at least two classes")
    size = int(images.shape[2])
    if not 1 <= object_size <= size:
        raise InvalidInputError(f"object_size must be between 1 and the image size {size}, got {object_size}")
    if tiles_per_side < 1 or size % tiles_per_side:
        raise InvalidInputError(f"tiles_per_side must divide the image size {size}, got {tiles_per_side}")
    if n < 1:
        raise InvalidInputError(f"n must be at least 1, got {n}")
    return size
