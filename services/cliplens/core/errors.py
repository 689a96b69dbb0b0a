"""Errors raised by the core. Each names the offending input so callers can report it verbatim."""

from __future__ import annotations


class CliplensError(Exception):
    """Base class of every error cliplens raises on purpose."""


class InvalidInputError(CliplensError, ValueError):
    """A caller-supplied value is malformed or out of range (maps to INVALID_ARGUMENT)."""


class NotFoundError(CliplensError, LookupError):
    """A named model, SAE, architecture or latent does not exist (maps to NOT_FOUND)."""


class UnknownArchitectureError(NotFoundError):
    """The open_clip architecture (or SAE architecture) name is not registered."""


class WeightsNotFoundError(NotFoundError):
    """Weights for a model could not be found at the given path or under the given tag."""


class SiteError(InvalidInputError):
    """An activation-site string is malformed or does not exist in the model."""


class ShapeMismatchError(InvalidInputError):
    """Two tensors or components that must agree in shape do not (e.g. SAE width vs. site width)."""
