"""What the API classes need from the deployments that do the work, as typed protocols, and one
adapter that turns a Serve deployment handle into such a backend.

An API class calls ``await backend.method(...)``: in the ingress the backend is a handle to another
deployment (:func:`remote`); on the Attributor's direct port it is the replica itself. Unit tests
use fakes. Calls carry the running call's deadline (:mod:`cliplens.serve.rpc_frame`), which the
deployment restores with :func:`takes_deadline`, so queued work of an expired call is dropped.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar, cast

from cliplens.core.steering import LatentEdit
from cliplens.serve.actor_types import (
    AttributionResult,
    CachedHeads,
    DecompositionResult,
    Floats,
    HeadDescriptions,
    HeadRanking,
    Label,
    LatentMatchResult,
    ModelFacts,
    Neighbour,
    Reconstructed,
    RequestImage,
    SparseRows,
    SteeringResult,
)
from cliplens.serve.rpc_frame import current_deadline, deadline_scope

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class EncoderBackend(Protocol):
    """The Encoder deployment."""

    async def facts(self) -> list[ModelFacts]: ...

    async def embed_images(self, model_id: str, images: list[RequestImage]) -> Floats: ...

    async def embed_texts(self, model_id: str, texts: list[str]) -> Floats: ...

    async def site_activations(self, model_id: str, site: str, images: list[RequestImage]) -> Floats: ...


class SaeBackend(Protocol):
    """The SaeRunner deployment (SAEs by id)."""

    async def encode(self, sae_id: str, rows: Floats, max_active: int) -> SparseRows: ...

    async def decode(self, sae_id: str, dense: Floats) -> Floats: ...

    async def reconstruct(self, sae_id: str, rows: Floats, include_latents: bool) -> Reconstructed: ...


class AttributionBackend(Protocol):
    """The Attributor deployment (CLIP models with gradients, SAEs by id, latent labels)."""

    async def attribute(
        self, sae_id: str, image: RequestImage, texts: list[str], top_n: int, patch_maps: bool
    ) -> AttributionResult: ...

    async def decompose(self, model_id: str, image: RequestImage, text: str) -> DecompositionResult: ...

    async def steer(
        self, sae_id: str, image: RequestImage, edits: list[LatentEdit], class_names: list[str]
    ) -> SteeringResult: ...

    async def labels(self, sae_id: str, latents: list[int], n: int) -> list[list[Label]]: ...

    async def neighbours(self, sae_id: str, latent: int, n: int) -> list[Neighbour]: ...

    async def search(self, sae_id: str, text: str, top_n: int) -> list[LatentMatchResult]: ...

    async def describe_heads(
        self, model_id: str, pool: list[str], per_head: int, layers: list[int]
    ) -> CachedHeads[HeadDescriptions]: ...

    async def rank_heads(
        self, model_id: str, dataset: str, class_names: list[str], max_images: int
    ) -> CachedHeads[HeadRanking]: ...


class _DeploymentBackend:
    """A handle's methods as plain coroutines; see :func:`remote`."""

    def __init__(self, handle: Any, routed: frozenset[str]) -> None:
        self._handle, self._routed = handle, routed

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any) -> Any:
            target = (
                self._handle.options(multiplexed_model_id=args[0]) if name in self._routed else self._handle
            )
            return await getattr(target, name).remote(*args, deadline=current_deadline())

        return call


def remote(handle: Any, routed_by_sae: Iterable[str] = ()) -> Any:
    """``handle`` (a Serve deployment handle) as a backend: ``await backend.m(*args)`` is
    ``handle.m.remote(*args)``; assign it to a variable typed with the backend's protocol. Methods in
    ``routed_by_sae`` go to a replica that holds the SAE named by their first argument (Serve's model
    multiplexing)."""
    return _DeploymentBackend(handle, frozenset(routed_by_sae))


def takes_deadline(method: F) -> F:
    """For a deployment's backend method: accept the caller's ``deadline`` keyword and make it the
    running call's deadline inside the method."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, deadline: float | None = None, **kwargs: Any) -> Any:
        with deadline_scope(deadline if deadline is not None else current_deadline()):
            return await method(self, *args, **kwargs)

    return cast(F, wrapper)
