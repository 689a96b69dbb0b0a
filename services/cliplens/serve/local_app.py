"""The cliplens app on one machine: deployment options that fit a laptop, the cold-cache fill and the
Serve start, shared by ``cliplens serve`` and ``make demo``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cliplens.core.sites import Site
from cliplens.serve.app import GRPC_SERVICER_FUNCTIONS, compose
from cliplens.serve.catalog import Catalog
from cliplens.serve.settings import AppSettings
from cliplens.store import ObjectStore, TopKCache, fill_cache, load_results

APP_NAME = "cliplens"
WEB_PATH = "/ui"
# CPUs reserved per replica on one machine: together under two cores, so that a 2-core laptop
# places every replica (they are scheduling tokens; each replica still uses the cores it finds).
LOCAL_CPUS: dict[str, float] = {
    "CliplensIngress": 0.25,
    "Encoder": 0.5,
    "SaeRunner": 0.25,
    "Attributor": 0.5,
    "FeatureGateway": 0.25,
}
# The deployments that run CLIP and share the machine's GPUs when it has any.
GPU_DEPLOYMENTS = ("Encoder", "Attributor")


@dataclass(frozen=True)
class ServePorts:
    """Where the app listens on one machine: Serve's gRPC proxy (every service) and HTTP proxy
    (health, routes), and the direct FeatureService and AttributionService ports (0: none)."""

    grpc: int = 9000
    http: int = 8000
    feature: int = 9001
    attribution: int = 9002
    host: str = "127.0.0.1"

    def direct_ports(self) -> dict[str, dict[str, Any]]:
        """The app settings of the direct ports."""
        return {
            "feature_port": {"host": self.host, "port": self.feature},
            "attribution_port": {"host": self.host, "port": self.attribution},
        }


def local_options(gpus: float) -> dict[str, dict[str, Any]]:
    """Overrides of the deployment defaults for one machine: :data:`LOCAL_CPUS`; with GPUs, the CLIP
    deployments share them (half a GPU each when there is one)."""
    share = min(1.0, gpus / len(GPU_DEPLOYMENTS)) or 0
    return {
        name: {"ray_actor_options": {"num_cpus": cpus, "num_gpus": share if name in GPU_DEPLOYMENTS else 0}}
        for name, cpus in LOCAL_CPUS.items()
    }


def fill_cold_cache(settings: AppSettings, store: ObjectStore) -> list[str]:
    """Load the feature index of every served SAE that the cache lacks from the store; the SAE ids
    loaded. Raises :class:`StoreUnavailableError` when Redis is down."""
    loaded = []
    for sae_id, served in Catalog(settings, store).saes.items():
        if not served.has_feature_index or TopKCache(settings.cache_url).is_ready(sae_id):
            continue
        patches = Site.parse(served.record.cfg.site).patches
        fill_cache(settings.cache_url, load_results(store, served.record.run_id, sae_id, patches))
        loaded.append(sae_id)
    return loaded


def start_app(
    settings: AppSettings,
    options: Mapping[str, Mapping[str, Any]],
    ports: ServePorts = ServePorts(),
    name: str = APP_NAME,
) -> None:
    """Start Serve's proxies in this process's Ray (once: a second app joins them) and deploy the app
    as ``name`` (routed with the ``application`` metadata); returns once it is running. The one way
    the CLI, the demo, the benchmarks and the tests start it."""
    from ray import serve
    from ray.serve.config import gRPCOptions

    serve.start(
        http_options={"host": ports.host, "port": ports.http},
        grpc_options=gRPCOptions(port=ports.grpc, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
    )
    serve.run(compose(settings, options), name=name, route_prefix=route_prefix(name))


def route_prefix(name: str) -> str:
    """Where an app's HTTP routes live: the main app owns the root (its web pages at ``/ui``), any
    other app on the same proxies is under ``/<name>``."""
    return "/" if name == APP_NAME else f"/{name}"


def web_address(ports: ServePorts, name: str = APP_NAME) -> str:
    """The URL of an app's web pages."""
    return f"http://{ports.host}:{ports.http}{route_prefix(name).rstrip('/')}{WEB_PATH}/"
