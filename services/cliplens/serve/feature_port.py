"""FeatureGateway: FeatureService on its own gRPC port, answered in the replica without Serve's proxy.

A TopActivations lookup is one Redis round trip; through the Serve gRPC proxy it pays two actor hops
as well. The gateway replica serves the same FeatureService on ``feature_port`` (see
:mod:`cliplens.serve.direct_port`); the ingress's port 9000 keeps serving it too.
"""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle

from cliplens.serve.auth import TokenAuth
from cliplens.serve.catalog import Catalog
from cliplens.serve.direct_port import FeatureServicer, start_direct_server
from cliplens.serve.feature_api import FeatureApi
from cliplens.serve.settings import AppSettings
from cliplens.store import open_store


@serve.deployment(name="FeatureGateway", max_ongoing_requests=4, ray_actor_options={"num_cpus": 0.5})
class FeatureGateway:
    async def __init__(self, settings: AppSettings, attributor: DeploymentHandle) -> None:  # type: ignore[misc]  # Ray actors allow it
        store = open_store(settings.store_uri)
        servicer = FeatureServicer(
            FeatureApi(settings, Catalog(settings, store), store, attributor), TokenAuth(settings.auth)
        )
        self.server = await start_direct_server(servicer, settings.feature_port)
