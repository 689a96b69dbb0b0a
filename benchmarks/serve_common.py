"""Shared set-up of the serve benchmarks: one local Ray + Serve running the cliplens app on loopback,
with the demo SAE catalogue and a private redis-server (the same fixtures the serve tests use)."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cliplens.core.models import load_clip
from cliplens.demo.catalogue import DemoIndex, build_demo_index
from cliplens.serve.local_app import APP_NAME, ServePorts, start_app
from cliplens.serve.settings import AppSettings, DirectPortSettings
from cliplens.store.local_stack import RedisServer, free_ports

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
APP = APP_NAME


@dataclass(frozen=True)
class Running:
    address: str
    index: DemoIndex
    feature_address: str  # the FeatureGateway's direct port
    attribution_address: str  # the Attributor's direct port


@dataclass(frozen=True)
class Stack:
    settings: AppSettings
    index: DemoIndex
    ports: ServePorts

    def start(self, options: dict[str, dict[str, Any]]) -> Running:
        """Start the app on this stack (``options`` per deployment); where it listens."""
        start_app(self.settings, options, self.ports)
        return Running(
            f"127.0.0.1:{self.ports.grpc}",
            self.index,
            f"127.0.0.1:{self.settings.feature_port.port}",
            f"127.0.0.1:{self.settings.attribution_port.port}",
        )


@contextmanager
def demo_stack(
    models: list[str], store_dir: Path | None = None, num_cpus: int = 4, **args: Any
) -> Iterator[Stack]:
    """Ray (``num_cpus``), Redis, the demo catalogue and the app's settings (loopback ports; ``args``
    go into :class:`AppSettings`); the app serves the SAEs of ``store_dir``, by default the
    catalogue's. Stops Serve, Ray and Redis on the way out."""
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    import ray
    from ray import serve

    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis")
        redis.start()
        index = build_demo_index(load_clip("demo", device="cpu"), Path(tmp), redis.url)
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        grpc_port, http_port, feature_port, attribution_port = free_ports(4)
        settings = AppSettings(
            models=models,
            store_uri=str(store_dir or index.store_dir),
            image_store_uri=str(index.bucket_dir),
            redis_url=redis.url,
            feature_port=DirectPortSettings(host="127.0.0.1", port=feature_port),
            attribution_port=DirectPortSettings(host="127.0.0.1", port=attribution_port),
            **args,
        )
        try:
            yield Stack(settings, index, ServePorts(grpc=grpc_port, http=http_port))
        finally:
            serve.shutdown()
            ray.shutdown()
            redis.stop()


@contextmanager
def serve_app(
    models: list[str], options: dict[str, dict[str, Any]], store_dir: Path | None = None, **args: Any
) -> Iterator[Running]:
    """:func:`demo_stack` with the app started (``options`` per deployment)."""
    with demo_stack(models, store_dir, **args) as stack:
        yield stack.start(options)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so that a timer sees all of it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "mean_ms": statistics.fmean(ms),
    }


def cpu_times() -> tuple[int, int] | None:
    """(steal, total) CPU ticks since boot from /proc/stat (None off Linux): the share of time the
    hypervisor gave this VM's vCPUs to others is the steal delta over the total delta."""
    stat = Path("/proc/stat")
    if not stat.is_file():
        return None
    ticks = [int(field) for field in stat.read_text().split("\n", 1)[0].split()[1:]]
    return ticks[7], sum(ticks)


def steal_share(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    if start is None or end is None:
        return None
    return (end[0] - start[0]) / max(1, end[1] - start[1])


def write_results(name: str, payload: dict[str, Any], markdown: str, directory: Path = RESULTS) -> None:
    """``<directory>/<name>.json`` and ``.md``; prints the markdown."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (directory / f"{name}.md").write_text(markdown)
    print(markdown)
