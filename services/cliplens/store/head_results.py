"""Head descriptions (TextSpan) and head rankings (mean ablation), computed once per model and inputs.

Results are JSON objects at ``heads/<model_id>/describe-<digest>.json`` and
``heads/<model_id>/rank-<digest>.json``. The digest is a SHA-256 over everything that determines
the result: the model (id, architecture, weights file name), the description texts, ``per_head``
and the layers, or the class names; the images (the SHA-256 of the parquet's bytes and
``max_images``); and :data:`FORMAT_VERSION`. Any replica or ``cliplens heads`` that asks the same
question reads the stored answer instead of computing it again.

Images come from a labelled parquet (columns ``key``, ``jpg``, ``label``, as ``cliplens extract``
reads them): a key in a store, or by default the shipped CIFAR-10 sample.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from PIL import Image
from torch import Tensor

from cliplens.core.decomposition import (
    DEFAULT_PER_HEAD,
    HeadAblationResult,
    HeadDescription,
    HeadDescriptions,
    HeadRanking,
    TextSpanPick,
    check_per_head,
    check_pool_size,
    describe_heads,
    load_descriptions,
    rank_heads,
    resolve_layers,
)
from cliplens.core.decomposition.heads import DEFAULT_RANK
from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.models import LoadedClip
from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.store.decoding import Skipped, decode_image
from cliplens.store.objects import LocalStore, ObjectStore
from cliplens.store.readers import parquet_records
from cliplens.store.sample import SAMPLE_PARQUET

HEADS_PREFIX = "heads/"
# Bump when the stored layout or the computation changes: old entries are then never read again.
FORMAT_VERSION = 1
DEFAULT_MAX_IMAGES = 2000
MAX_IMAGES = 5000
SAMPLE_SOURCE = "the shipped CIFAR-10 sample"

R = TypeVar("R")


@dataclass(frozen=True)
class CachedHeads(Generic[R]):
    """A result, its key in the store, and whether it was read from there (``False``: computed now)."""

    result: R
    key: str
    cached: bool


@dataclass(frozen=True)
class LabelledImageSet:
    """Decoded images of a labelled parquet, their keys and their labels (``None``: unlabelled)."""

    source: str
    keys: list[str]
    images: list[Image.Image]
    labels: list[str | None]


@dataclass(frozen=True)
class LabelledParquet:
    """The bytes of a labelled parquet (columns ``key``, ``jpg``, ``label``) and its name in messages."""

    source: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def read(self, max_images: int = DEFAULT_MAX_IMAGES) -> LabelledImageSet:
        """The first ``max_images`` decodable images (undecodable ones are skipped)."""
        _check_max_images(max_images)
        keys, images, labels = [], [], []
        for record in parquet_records(self.data, self.source):
            image = decode_image(record.data)
            if isinstance(image, Skipped):
                continue
            keys.append(record.key)
            images.append(image)
            labels.append(record.label)
            if len(images) == max_images:
                break
        if not images:
            raise InvalidInputError(f"{self.source} holds no decodable image")
        return LabelledImageSet(self.source, keys, images, labels)


def open_labelled_parquet(store: ObjectStore | None = None, key: str | None = None) -> LabelledParquet:
    """The parquet at ``key`` in ``store``; without a key (or store), the shipped CIFAR-10 sample.

    Raises :class:`NotFoundError` naming the key when it is missing, and :class:`InvalidInputError`
    when it is no parquet or lacks a ``key``, ``jpg`` or ``label`` column.
    """
    if store is None or not key:
        store, key, source = LocalStore(SAMPLE_PARQUET.parent), SAMPLE_PARQUET.name, SAMPLE_SOURCE
    else:
        source = f"dataset '{key}'"
    try:
        parquet = LabelledParquet(source, store.get_bytes(key))
    except NotFoundError:
        raise NotFoundError(f"{source} not found in the store {store.uri}") from None
    next(parquet_records(parquet.data, source), None)  # checks the format and the columns
    return parquet


def describe_heads_cached(
    store: ObjectStore,
    clip: LoadedClip,
    *,
    pool: Sequence[str] | None = None,
    per_head: int = DEFAULT_PER_HEAD,
    layers: Sequence[int] | None = None,
    max_images: int = DEFAULT_MAX_IMAGES,
    batch_size: int = 64,
) -> CachedHeads[HeadDescriptions]:
    """:func:`~cliplens.core.decomposition.describe_heads` over the shipped sample, from the store's
    cache when it holds the answer, else computed and stored.

    ``pool`` defaults to the shipped descriptions, ``layers`` (empty or ``None``) to all.
    """
    texts = load_descriptions() if pool is None else check_pool_size(pool)
    check_per_head(per_head, len(texts))
    chosen = resolve_layers(clip, layers)
    sample = open_labelled_parquet()
    _check_max_images(max_images)
    inputs = {
        "pool_sha256": hashlib.sha256(json.dumps(texts).encode()).hexdigest(),
        "pool_size": len(texts),
        "per_head": per_head,
        "layers": list(chosen),
        "rank": DEFAULT_RANK,
        "images": {"sha256": sample.sha256, "max_images": max_images},
    }

    def compute() -> HeadDescriptions:
        pixels = _pixels(clip, sample.read(max_images).images)
        return describe_heads(clip, pixels, texts, per_head, chosen, batch_size=batch_size)

    return _cached(store, clip, "describe", inputs, compute, _descriptions_json, _descriptions_from_json)


def rank_heads_cached(
    store: ObjectStore,
    clip: LoadedClip,
    *,
    dataset: str | None = None,
    class_names: Sequence[str] | None = None,
    max_images: int = DEFAULT_MAX_IMAGES,
    data_store: ObjectStore | None = None,
    batch_size: int = 64,
) -> CachedHeads[HeadRanking]:
    """:func:`~cliplens.core.decomposition.rank_heads` on the labelled parquet ``dataset`` (a key in
    ``data_store``, default ``store``; ``None``: the shipped sample), cached like
    :func:`describe_heads_cached`.

    ``class_names[i]`` names integer label ``i``; labels may also be the names themselves. Without
    class names the labels must be names (the classes are their distinct values, sorted), except for
    the shipped sample, whose labels index the CIFAR-10 classes.
    """
    parquet = open_labelled_parquet(data_store or store, dataset)
    _check_max_images(max_images)
    given = list(class_names or ())
    inputs = {"class_names": given, "images": {"sha256": parquet.sha256, "max_images": max_images}}

    def compute() -> HeadRanking:
        labelled = parquet.read(max_images)
        default = list(CIFAR10_CLASSES) if parquet.source == SAMPLE_SOURCE else []
        labels, names = label_indices(labelled, given or default)
        return rank_heads(clip, _pixels(clip, labelled.images), labels, names, batch_size=batch_size)

    return _cached(store, clip, "rank", inputs, compute, _ranking_json, _ranking_from_json)


def label_indices(labelled: LabelledImageSet, class_names: Sequence[str]) -> tuple[Tensor, list[str]]:
    """Class indices of the labels and the class names they index.

    A label is a class index below ``len(class_names)`` or one of the names; without class names the
    labels must be names, and the classes are their distinct values in sorted order.
    """
    missing = [key for key, label in zip(labelled.keys, labelled.labels, strict=True) if not label]
    if missing:
        raise InvalidInputError(
            f"{labelled.source} has {len(missing)} images without a label, e.g. '{missing[0]}'"
        )
    labels = [str(label) for label in labelled.labels]
    names = list(class_names)
    if not names:
        if all(label.isdigit() for label in labels):
            raise InvalidInputError(
                f"the labels of {labelled.source} are class indices: give the class names"
            )
        names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    out = []
    for key, label in zip(labelled.keys, labels, strict=True):
        if label.isdigit() and int(label) < len(names):
            out.append(int(label))
        elif label in index:
            out.append(index[label])
        else:
            raise InvalidInputError(
                f"label '{label}' of image '{key}' in {labelled.source} is neither a class index below "
                f"{len(names)} nor one of the class names"
            )
    return torch.tensor(out, dtype=torch.int64), names


def heads_key(clip: LoadedClip, kind: str, inputs: dict[str, Any]) -> str:
    """The store key of a ``kind`` (``describe`` or ``rank``) result of ``clip`` for ``inputs``."""
    spec = clip.spec
    identity = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "model": {
            "id": spec.id,
            "arch": spec.arch,
            "weights": Path(spec.pretrained).name if spec.pretrained else None,
        },
        "inputs": inputs,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    return f"{HEADS_PREFIX}{_safe(spec.id)}/{kind}-{digest}.json"


def _cached(
    store: ObjectStore,
    clip: LoadedClip,
    kind: str,
    inputs: dict[str, Any],
    compute: Callable[[], R],
    to_json: Callable[[R], dict[str, Any]],
    from_json: Callable[[dict[str, Any]], R],
) -> CachedHeads[R]:
    key = heads_key(clip, kind, inputs)
    stored = _read_json(store, key)
    if stored is not None and stored.get("format") == FORMAT_VERSION and stored.get("kind") == kind:
        try:
            return CachedHeads(from_json(stored), key, cached=True)
        except (KeyError, TypeError, ValueError):
            pass  # an unreadable entry is computed again and overwritten
    result = compute()
    document = {"format": FORMAT_VERSION, "kind": kind, "inputs": inputs, **to_json(result)}
    store.put_bytes(key, json.dumps(document, indent=1).encode())
    return CachedHeads(result, key, cached=False)


def _read_json(store: ObjectStore, key: str) -> dict[str, Any] | None:
    try:
        value = json.loads(store.get_bytes(key))
    except NotFoundError:
        return None
    except ValueError:  # not JSON: treated as absent
        return None
    return value if isinstance(value, dict) else None


def _descriptions_json(result: HeadDescriptions) -> dict[str, Any]:
    return {
        "model_id": result.model_id,
        "n_images": result.n_images,
        "per_head": result.per_head,
        "heads": [
            {
                "layer": h.layer,
                "head": h.head,
                "variance": h.variance,
                "descriptions": [
                    {"text": p.text, "index": p.index, "variance_explained": p.variance_explained}
                    for p in h.descriptions
                ],
            }
            for h in result.heads
        ],
    }


def _descriptions_from_json(data: dict[str, Any]) -> HeadDescriptions:
    heads = tuple(
        HeadDescription(
            int(h["layer"]),
            int(h["head"]),
            tuple(
                TextSpanPick(str(p["text"]), int(p["index"]), float(p["variance_explained"]))
                for p in h["descriptions"]
            ),
            float(h["variance"]),
        )
        for h in data["heads"]
    )
    return HeadDescriptions(str(data["model_id"]), int(data["n_images"]), int(data["per_head"]), heads)


def _ranking_json(result: HeadRanking) -> dict[str, Any]:
    return {
        "model_id": result.model_id,
        "n_images": result.n_images,
        "class_names": list(result.class_names),
        "accuracy": result.accuracy,
        "heads": [
            {"layer": h.layer, "head": h.head, "accuracy": h.accuracy, "accuracy_drop": h.accuracy_drop}
            for h in result.heads
        ],
    }


def _ranking_from_json(data: dict[str, Any]) -> HeadRanking:
    heads = tuple(
        HeadAblationResult(int(h["layer"]), int(h["head"]), float(h["accuracy"]), float(h["accuracy_drop"]))
        for h in data["heads"]
    )
    return HeadRanking(
        str(data["model_id"]),
        int(data["n_images"]),
        tuple(str(name) for name in data["class_names"]),
        float(data["accuracy"]),
        heads,
    )


def _pixels(clip: LoadedClip, images: list[Image.Image]) -> Tensor:
    """Preprocessed images on the CPU (the core moves each batch to the model's device)."""
    return torch.stack([clip.preprocess(image) for image in images])


def _check_max_images(max_images: int) -> None:
    if not 1 <= max_images <= MAX_IMAGES:
        raise InvalidInputError(f"max_images must be between 1 and {MAX_IMAGES}, got {max_images}")


def _safe(model_id: str) -> str:
    """The model id as one key segment: characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", model_id).strip(".") or "_"
