"""Prompt templates and class names used for zero-shot classification."""

from __future__ import annotations

from cliplens.core.models import ASSETS_DIR

CIFAR10_CLASSES_FILE = ASSETS_DIR / "demo" / "cifar10-classes.txt"
"""CIFAR-10's class names, one a line in label order: a class-names file for ``--labels-from``."""

CIFAR10_CLASSES: tuple[str, ...] = tuple(
    line.strip() for line in CIFAR10_CLASSES_FILE.read_text().splitlines() if line.strip()
)
"""CIFAR-10's class names in label order, read from :data:`CIFAR10_CLASSES_FILE`."""

# Short photo-style templates; "{}" is replaced by the class name.
PHOTO_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a low resolution photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of a {}.",
    "a photo of a small {}.",
    "a photo of a big {}.",
    "a pixelated photo of a {}.",
    "a cropped photo of a {}.",
    "a good photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a {}.",
    "the {}.",
)


def fill_templates(class_name: str, templates: tuple[str, ...] = PHOTO_TEMPLATES) -> list[str]:
    """Return one prompt per template for ``class_name``."""
    return [template.format(class_name) for template in templates]
