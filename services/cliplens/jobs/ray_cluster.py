"""Connecting a batch job to Ray: the current session, a cluster given by address, or a local one.

Token authentication (on by default since Ray 2.5x): cliplens never turns it off. A local cluster
started by a job gets Ray's default (token mode, the token generated under ``~/.ray/auth_token``);
``RAY_AUTH_MODE`` is respected when the user sets it. To join a cluster that uses tokens, give its
token through ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``; a rejected or
missing token ends the job with one error naming those variables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray
from ray.exceptions import AuthenticationError

from cliplens.core.errors import CliplensError

ADDRESS_ENV = "RAY_ADDRESS"


class RayConnectionError(CliplensError):
    """The job could not join the Ray cluster it was pointed at."""


@contextmanager
def ray_cluster(address: str | None = None) -> Iterator[None]:
    """Use the Ray already initialised in this process, else join ``address`` (or ``$RAY_ADDRESS``),
    else start a private local cluster; shut down only what this call started."""
    if ray.is_initialized():
        yield
        return
    target = address or os.environ.get(ADDRESS_ENV) or None
    try:
        ray.init(address=target, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except AuthenticationError as exc:
        raise RayConnectionError(
            f"Ray cluster {target} rejected this job's authentication token ({exc}); provide the "
            "cluster's token via RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
        ) from None
    except ConnectionError as exc:
        raise RayConnectionError(f"cannot reach the Ray cluster at {target}: {exc}") from None
    try:
        yield
    finally:
        ray.shutdown()
