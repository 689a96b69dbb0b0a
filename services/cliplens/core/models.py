"""Loading open_clip models by architecture and weights, and the registry of model ids."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from jaxtyping import Float, UInt8
from PIL import Image
from torch import Tensor
from torchvision.transforms import Compose, Normalize, ToTensor

from cliplens.core.errors import (
    InvalidInputError,
    NotFoundError,
    UnknownArchitectureError,
    WeightsNotFoundError,
)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_REGISTRY = ASSETS_DIR / "models.json"
REGISTRY_ENV = "CLIPLENS_MODELS"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model: an open_clip architecture plus where its weights come from.

    ``pretrained`` is an open_clip tag (downloaded or read from open_clip's cache), a local
    checkpoint path, or ``None`` for random weights. ``config`` optionally names an open_clip
    model-config JSON to register first (its file stem must equal ``arch``).
    """

    id: str
    arch: str
    pretrained: str | None = None
    config: str | None = None
    description: str = ""


class ModelRegistry:
    """Model ids -> :class:`ModelSpec`, read from a JSON file (relative paths resolve beside it)."""

    def __init__(self, specs: Mapping[str, ModelSpec]) -> None:
        self._specs = dict(specs)

    @classmethod
    def from_file(cls, path: str | Path) -> ModelRegistry:
        path = Path(path)
        try:
            raw: dict[str, dict[str, Any]] = json.loads(path.read_text())
        except FileNotFoundError:
            raise NotFoundError(f"model registry file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"model registry {path} is not valid JSON: {exc}") from None
        specs = {}
        for model_id, entry in raw.items():
            if "arch" not in entry:
                raise InvalidInputError(f"model registry {path}: entry '{model_id}' has no 'arch'")
            specs[model_id] = ModelSpec(
                id=model_id,
                arch=entry["arch"],
                pretrained=_resolve_relative(entry.get("pretrained"), path.parent),
                config=_resolve_relative(entry.get("config"), path.parent),
                description=entry.get("description", ""),
            )
        return cls(specs)

    @classmethod
    def default(cls) -> ModelRegistry:
        """The shipped registry, extended (and overridden) by the file named in ``$CLIPLENS_MODELS``."""
        registry = cls.from_file(DEFAULT_REGISTRY)
        extra = os.environ.get(REGISTRY_ENV)
        if extra:
            registry = registry.merged(cls.from_file(extra))
        return registry

    def merged(self, other: ModelRegistry) -> ModelRegistry:
        return ModelRegistry({**self._specs, **other._specs})

    def ids(self) -> list[str]:
        return sorted(self._specs)

    def get(self, model_id: str) -> ModelSpec:
        try:
            return self._specs[model_id]
        except KeyError:
            raise NotFoundError(
                f"unknown model id '{model_id}'; registered ids: {', '.join(self.ids())}"
            ) from None

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._specs


@dataclass(frozen=True)
class PixelSteps:
    """open_clip's eval transform split at ``ToTensor``: image steps per image, then one batched
    normalisation (same values as the per-image transform, less work under the GIL, and uint8
    pixels until the model's device)."""

    image_steps: Callable[[Image.Image], Image.Image]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, preprocess: Callable[[Image.Image], Tensor]) -> PixelSteps:
        """Split a ``Compose([...image steps, ToTensor, Normalize])``; raise naming what differs."""
        steps = list(getattr(preprocess, "transforms", []))
        tail = [type(step).__name__ for step in steps[-2:]]
        if len(steps) < 2 or not isinstance(steps[-2], ToTensor) or not isinstance(steps[-1], Normalize):
            raise InvalidInputError(
                f"image transform must end with ToTensor, Normalize to be split; its last steps are {tail}"
            )
        return cls(Compose(steps[:-2]), tuple(steps[-1].mean), tuple(steps[-1].std))

    def pixels(self, image: Image.Image) -> UInt8[Tensor, "3 height width"]:
        """The image steps' output as a uint8 ``(3, height, width)`` tensor."""
        return torch.from_numpy(np.array(self.image_steps(image))).permute(2, 0, 1)

    def normalise(
        self, pixels: UInt8[Tensor, "batch 3 height width"], device: torch.device, dtype: torch.dtype
    ) -> Float[Tensor, "batch 3 height width"]:
        """``ToTensor`` + ``Normalize`` over a whole batch, on ``device``, cast to ``dtype`` last."""
        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        scaled = pixels.to(device).float().div(255)
        return scaled.sub_(mean).div_(std).to(dtype)


@dataclass
class LoadedClip:
    """An open_clip model in eval mode with frozen weights, with its preprocessing and tokenizer.

    cliplens never trains CLIP: gradients flow to activations and inputs only, so frozen weights keep
    attribution from building (and back-propagating through) a graph over every parameter.
    """

    spec: ModelSpec
    model: open_clip.CLIP
    preprocess: Callable[[Image.Image], Tensor]
    tokenizer: Callable[[list[str]], Tensor]
    device: torch.device
    dtype: torch.dtype
    pixel_steps: PixelSteps

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, tuple) else size)

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[-1]) if self.model.text_projection is not None else -1

    def preprocess_images(self, images: list[Image.Image]) -> Float[Tensor, "batch 3 height width"]:
        """Preprocess PIL images into a batch on the model's device and dtype."""
        return self.normalise_pixels(torch.stack([self.pixel_steps.pixels(image) for image in images]))

    def normalise_pixels(
        self, pixels: UInt8[Tensor, "batch 3 height width"]
    ) -> Float[Tensor, "batch 3 height width"]:
        """uint8 pixels from :meth:`PixelSteps.pixels` -> the model's input, on its device and dtype."""
        return self.pixel_steps.normalise(pixels, self.device, self.dtype)

    def encode_texts(self, texts: list[str]) -> Float[Tensor, "n_texts d_embed"]:
        """Text embeddings (not normalised) for ``texts``."""
        if not texts:
            raise InvalidInputError("texts must not be empty")
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise InvalidInputError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPES)}") from None


def load_clip(
    model: str | ModelSpec,
    *,
    pretrained: str | None = None,
    registry: ModelRegistry | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "fp32",
) -> LoadedClip:
    """Load a model by registry id, by :class:`ModelSpec`, or by open_clip ``arch`` + ``pretrained``."""
    if isinstance(model, ModelSpec):
        spec = model
    else:
        registry = registry or ModelRegistry.default()
        if model in registry and pretrained is None:
            spec = registry.get(model)
        else:
            spec = ModelSpec(id=model, arch=model, pretrained=pretrained)
            if model not in open_clip.list_models():
                _check_arch(model, also=f"not a registered model id ({', '.join(registry.ids())}) and ")
    if spec.config is not None:
        _register_config(spec)
    _check_arch(spec.arch)
    checkpoint = _check_weights(spec)
    torch_device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    try:
        clip, _, preprocess = open_clip.create_model_and_transforms(
            spec.arch, pretrained=checkpoint, device=torch_device, load_weights=True
        )
    except Exception as exc:
        if spec.pretrained is None or checkpoint is None:
            raise
        raise WeightsNotFoundError(
            f"could not load weights '{spec.pretrained}' for model '{spec.id}' (arch {spec.arch}): {exc}"
        ) from exc
    clip = clip.to(torch_dtype).eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(spec.arch)
    return LoadedClip(spec, clip, preprocess, tokenizer, torch_device, torch_dtype, PixelSteps.of(preprocess))


def _resolve_relative(value: str | None, base: Path) -> str | None:
    if value is None or not _looks_like_path(value):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _looks_like_path(value: str) -> bool:
    return value.endswith((*CHECKPOINT_SUFFIXES, ".json")) or os.sep in value or value.startswith(".")


def _register_config(spec: ModelSpec) -> None:
    config = Path(spec.config or "")
    if not config.is_file():
        raise NotFoundError(f"model config for '{spec.id}' not found at {config}")
    if config.stem != spec.arch:
        raise InvalidInputError(
            f"model config {config} must be named {spec.arch}.json to define arch '{spec.arch}'"
        )
    open_clip.add_model_config(config)


def _check_arch(arch: str, also: str = "") -> None:
    known = open_clip.list_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownArchitectureError(f"unknown model '{arch}': {also}not an open_clip architecture{hint}")


def _check_weights(spec: ModelSpec) -> str | None:
    """Return what to pass to open_clip as ``pretrained``; fail early and clearly when it cannot work."""
    if spec.pretrained is None:
        return None
    if _looks_like_path(spec.pretrained) or Path(spec.pretrained).exists():
        if not Path(spec.pretrained).is_file():
            raise WeightsNotFoundError(f"weights for model '{spec.id}' not found at path {spec.pretrained}")
        return spec.pretrained
    tags = open_clip.list_pretrained_tags_by_model(spec.arch)
    if spec.pretrained not in tags:
        known = ", ".join(tags) or "none"
        raise WeightsNotFoundError(
            f"model '{spec.id}' (arch {spec.arch}) has no pretrained tag '{spec.pretrained}' "
            f"and no file exists at that path; known tags: {known}"
        )
    return spec.pretrained
