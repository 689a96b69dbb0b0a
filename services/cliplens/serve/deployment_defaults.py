"""The one table of deployment defaults (resources and queue bounds) that :func:`compose` applies.

A Serve config's ``deployments`` section, the Helm chart and ``cliplens serve`` only override
these. Every queue is bounded: a call beyond ``max_ongoing_requests + max_queued_requests`` of a
deployment is refused at once (RESOURCE_EXHAUSTED), never left to time out. Batch sizes are app
settings (``encoder_batch``, ``attribution_batch``); a batched deployment's ``max_ongoing_requests``
must be at least its batch size, which :func:`check_batching` enforces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cliplens.core.errors import InvalidInputError


@dataclass(frozen=True)
class DeploymentDefaults:
    """Serve options of one deployment, before overrides."""

    num_cpus: float
    num_gpus: float
    # Requests a replica works on at once; those beyond wait in the caller's queue.
    max_ongoing_requests: int
    # Requests that wait for a replica at most; beyond this the call fails with RESOURCE_EXHAUSTED.
    max_queued_requests: int

    def options(self) -> dict[str, Any]:
        """Serve options (one replica, Serve's default, unless overridden)."""
        return {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
        }


DEPLOYMENT_DEFAULTS: dict[str, DeploymentDefaults] = {
    # Light: validation, Redis lookups, handle calls.
    "CliplensIngress": DeploymentDefaults(
        num_cpus=0.5, num_gpus=0, max_ongoing_requests=256, max_queued_requests=512
    ),
    # Batched CLIP forward passes (images or texts).
    "Encoder": DeploymentDefaults(num_cpus=1, num_gpus=0, max_ongoing_requests=64, max_queued_requests=256),
    # SAE encode/decode of given rows.
    "SaeRunner": DeploymentDefaults(num_cpus=1, num_gpus=0, max_ongoing_requests=16, max_queued_requests=128),
    # Batched forward + backward passes: the slowest work, the shortest queue.
    "Attributor": DeploymentDefaults(num_cpus=1, num_gpus=0, max_ongoing_requests=16, max_queued_requests=32),
    # Serves its direct port itself; Serve calls it for health checks only.
    "FeatureGateway": DeploymentDefaults(
        num_cpus=0.5, num_gpus=0, max_ongoing_requests=4, max_queued_requests=4
    ),
}
# Which app setting batches each batched deployment.
BATCHED = {"Encoder": "encoder_batch", "Attributor": "attribution_batch"}


def deployment_options(name: str, override: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The defaults of deployment ``name`` with ``override`` on top (``ray_actor_options`` merged
    key by key, so an override of ``num_gpus`` keeps the default ``num_cpus``)."""
    if name not in DEPLOYMENT_DEFAULTS:
        raise InvalidInputError(f"unknown deployment '{name}'; known: {', '.join(DEPLOYMENT_DEFAULTS)}")
    options = DEPLOYMENT_DEFAULTS[name].options()
    for key, value in (override or {}).items():
        if key == "ray_actor_options":
            options[key] = {**options[key], **value}
        else:
            options[key] = value
    return options


def check_batching(name: str, options: dict[str, Any], max_batch_size: int) -> None:
    """A batched deployment must take at least one batch of requests at once, or batches never fill."""
    if options["max_ongoing_requests"] < max_batch_size:
        raise InvalidInputError(
            f"{name}: max_ongoing_requests {options['max_ongoing_requests']} is below its batch size "
            f"{max_batch_size} ({BATCHED[name]}.max_batch_size)"
        )
