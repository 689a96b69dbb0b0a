"""Moved: the shipped sample is :mod:`cliplens.store.sample`, the class names :mod:`cliplens.core.prompts`.

Kept only for ``tests/serve/demo_index.py``; delete once it imports from those modules.
"""

from __future__ import annotations

from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.store.sample import load_labelled_parquet

__all__ = ["class_names", "load_labelled_parquet"]


def class_names() -> list[str]:
    return list(CIFAR10_CLASSES)
