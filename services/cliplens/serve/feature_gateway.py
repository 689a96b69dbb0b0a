"""FeatureGateway: FeatureService on its own gRPC port, answered in the replica without Serve's proxy.

A TopActivations lookup is one Redis round trip; through the Serve gRPC proxy it pays two actor hops
as well. The gateway replica serves the same FeatureApi on ``feature_port``
(:class:`cliplens.serve.direct_port.DirectPortHost`); the ingress's port 9000 keeps serving it too.
"""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle

from cliplens.serve.auth import TokenAuth
from cliplens.serve.backends import AttributionBackend, remote
from cliplens.serve.catalog import Catalog
from cliplens.serve.direct_port import DirectPortHost
from cliplens.serve.feature_api import FeatureApi
from cliplens.serve.feature_lookups import FeatureLookups
from cliplens.serve.settings import AppSettings


@serve.deployment(name="FeatureGateway")
class FeatureGateway:
    async def __init__(self, settings: AppSettings, attributor: DeploymentHandle) -> None:  # type: ignore[misc]  # Ray actors allow it
        store = settings.store()
        features = FeatureLookups(store, settings.cache_url, settings.redis_timeout_s)
        attributors: AttributionBackend = remote(attributor, ("labels", "neighbours", "search"))
        api = FeatureApi(settings, Catalog(settings, store), features, attributors)
        self.port = await DirectPortHost.start([api], TokenAuth(settings.auth), settings.feature_port)
