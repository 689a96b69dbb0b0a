"""Reliability of the served app under overload, expiring deadlines and a killed replica.

    .venv/bin/python benchmarks/reliability.py                      # all three, writes results/reliability.*
    .venv/bin/python benchmarks/reliability.py --only deadlines --tree /tmp/before --label before

1. **Load shedding**: ``--overload`` (600) AttributeLatents calls at once through port 9000, about ten
   times what the Attributor holds (16 in progress + 32 queued by default). Each call's status and
   latency; the rejection latency (RESOURCE_EXHAUSTED) is the figure (goal: p99 <= 100 ms).
2. **Deadlines**: ``--deadline-calls`` (40) calls at once, fewer than the queue bound, each with a
   ``--deadline-ms`` deadline, so that the later ones expire while queued. Wasted compute = requests
   the Attributor computed (its ``cliplens_batch_requests`` metric) minus the calls answered OK;
   dropped = ``cliplens_expired_requests_total``. ``--tree DIR`` runs the app from another checkout
   (e.g. a ``git worktree`` of the commit before deadlines were honoured) for the "before" figure.
3. **Failover**: a client sends AttributeLatents at ``--rate`` per second while the Attributor replica
   is killed: once with the direct port 9002 only, once with ``Client([9002, 9000])``. Calls lost,
   and the time until the direct port answers again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
APP = "cliplens"
SMALL = {"num_cpus": 0.25, "num_gpus": 0}


def use_tree(tree: Path) -> None:
    """Import cliplens (server, client, the served catalogue) from ``tree``, here and in Ray's workers."""
    paths = [tree / "services", tree / "clients" / "python", tree / "tests" / "serve", tree / "tests"]
    sys.path[:0] = [str(p) for p in paths]
    os.environ["PYTHONPATH"] = os.pathsep.join([*map(str, paths), os.environ.get("PYTHONPATH", "")])


@dataclass(frozen=True)
class Running:
    address: str
    attribution_address: str
    metrics_port: int
    jpeg: bytes
    sae_id: str


@contextmanager
def running_app() -> Iterator[Running]:
    """Ray (4 CPUs), Redis, the demo catalogue and the app with the code's deployment defaults (only
    CPU reservations made small, so that everything fits on 2 cores)."""
    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions

    try:
        from cliplens.demo.catalogue import FINAL_SAE, build_demo_index
        from cliplens.store.local_stack import RedisServer, free_ports
    except ImportError:  # an older tree: the catalogue lived with the serve tests, the stack in demo/
        from cliplens.demo.local_stack import RedisServer, free_ports  # type: ignore[import-not-found,no-redef]
        from demo_index import FINAL_SAE, build_demo_index  # type: ignore[import-not-found,no-redef]
    from cliplens.core.models import load_clip
    from cliplens.serve.app import GRPC_SERVICER_FUNCTIONS, compose
    from cliplens.serve.settings import AppSettings

    os.environ["RAY_metrics_report_interval_ms"] = "1000"  # noqa: SIM112 (Ray's own spelling)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "redis").mkdir()  # an older tree's RedisServer does not create it
        redis = RedisServer(Path(tmp) / "redis")
        redis.start()
        index = build_demo_index(load_clip("demo", device="cpu"), Path(tmp), redis.url)
        grpc_port, http_port, attribution_port, metrics_port = free_ports(4)
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, _metrics_export_port=metrics_port)
        try:
            serve.start(
                http_options={"host": "127.0.0.1", "port": http_port},
                grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
            )
            settings = AppSettings(
                models=["demo"],
                store_uri=str(index.store_dir),
                redis_url=redis.url,
                attribution_port={"host": "127.0.0.1", "port": attribution_port},
            )
            names = ("CliplensIngress", "Encoder", "SaeRunner", "Attributor")
            serve.run(
                compose(settings, {n: {"ray_actor_options": SMALL} for n in names}),
                name=APP,
                route_prefix="/cliplens",
            )
            yield Running(
                f"127.0.0.1:{grpc_port}",
                f"127.0.0.1:{attribution_port}",
                metrics_port,
                index.jpegs[0],
                FINAL_SAE,
            )
        finally:
            serve.shutdown()
            ray.shutdown()
            redis.stop()


def attribute_request(app: Running) -> Any:
    from cliplens_client.v1 import attribution_pb2, common_pb2

    return attribution_pb2.AttributeLatentsRequest(
        sae_id=app.sae_id, image=common_pb2.Image(data=app.jpeg), texts=["a photo of a cat"], top_n=5
    )


async def concurrent_calls(app: Running, n: int, timeout_s: float) -> list[tuple[str, float]]:
    """``n`` AttributeLatents calls at once through port 9000: (status name, seconds) each. The
    ``cliplens-timeout-ms`` metadata carries the deadline, as the cliplens client sends it."""
    import grpc

    from cliplens_client.v1 import attribution_pb2_grpc

    request = attribute_request(app)
    metadata = (("application", APP), ("cliplens-timeout-ms", str(int(timeout_s * 1000))))
    async with grpc.aio.insecure_channel(app.address) as channel:
        stub = attribution_pb2_grpc.AttributionServiceStub(channel)
        await stub.AttributeLatents(request, metadata=metadata, timeout=60)  # warm-up

        async def one() -> tuple[str, float]:
            start = time.perf_counter()
            try:
                await stub.AttributeLatents(request, metadata=metadata, timeout=timeout_s)
                return "OK", time.perf_counter() - start
            except grpc.aio.AioRpcError as error:
                return error.code().name, time.perf_counter() - start

        return list(await asyncio.gather(*(one() for _ in range(n))))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def by_status(outcomes: list[tuple[str, float]]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for status in sorted({s for s, _ in outcomes}):
        ms = [t * 1000 for s, t in outcomes if s == status]
        table[status] = {"calls": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}
    return table


def metric_total(port: int, name: str, operation: str) -> float:
    """Sum over replicas of a Ray-exported cliplens metric series for ``operation``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = re.compile(rf"^ray_{name}{{[^}}]*operation=\"{operation}\"[^}}]*}} ([0-9.e+-]+)$", re.M)
    return sum(float(value) for value in pattern.findall(text))


def settled_metric(port: int, name: str, operation: str, timeout_s: float = 90.0) -> float:
    """The metric once two readings 12 s apart agree (longer than Ray's export interval)."""
    deadline, last = time.monotonic() + timeout_s, -1.0
    while time.monotonic() < deadline:
        value = metric_total(port, name, operation)
        if value == last:
            return value
        last = value
        time.sleep(12)
    return last


def shedding(app: Running, n: int) -> dict[str, Any]:
    start = time.perf_counter()
    outcomes = asyncio.run(concurrent_calls(app, n, timeout_s=60))
    return {"calls": n, "seconds": time.perf_counter() - start, "by_status": by_status(outcomes)}


def deadlines(app: Running, n: int, deadline_ms: float) -> dict[str, Any]:
    name, op = "cliplens_batch_requests_sum", "attribute_latents"
    before = settled_metric(app.metrics_port, name, op)
    dropped_before = metric_total(app.metrics_port, "cliplens_expired_requests_total", op)
    outcomes = asyncio.run(concurrent_calls(app, n, timeout_s=deadline_ms / 1000))
    computed = settled_metric(app.metrics_port, name, op) - before - 1  # minus the warm-up call
    dropped = metric_total(app.metrics_port, "cliplens_expired_requests_total", op) - dropped_before
    ok = sum(1 for status, _ in outcomes if status == "OK")
    return {
        "calls": n,
        "deadline_ms": deadline_ms,
        "by_status": by_status(outcomes),
        "computed": computed,
        "dropped_expired": dropped,
        "wasted": computed - ok,
    }


def failover(app: Running, rate: float, seconds: float) -> dict[str, Any]:
    """Calls at ``rate``/s for ``seconds`` per client kind, killing the Attributor replica a third of the way in."""
    import ray

    from cliplens_client import Client, RetryPolicy, RpcError

    results = {}
    for label, targets in (
        ("direct port only", [app.attribution_address]),
        ("direct port, then 9000", [app.attribution_address, app.address]),
    ):
        with Client(
            targets if len(targets) > 1 else targets[0], timeout=30, retry=RetryPolicy(max_attempts=1)
        ) as client:
            client.attribute_latents(app.sae_id, app.jpeg, ["a cat"], top_n=3)  # warm
            failed, calls, killed_at, recovered_at = 0, 0, None, None
            start = time.monotonic()
            while time.monotonic() - start < seconds:
                if killed_at is None and time.monotonic() - start > seconds / 3:
                    [actor] = [
                        a
                        for a in ray.util.list_named_actors(all_namespaces=True)
                        if f"{APP}#Attributor#" in a["name"]
                    ]
                    ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
                    killed_at = time.monotonic()
                calls += 1
                try:
                    client.attribute_latents(app.sae_id, app.jpeg, ["a cat"], top_n=3)
                    if killed_at is not None and recovered_at is None and _direct_port_answers(app):
                        recovered_at = time.monotonic()
                except RpcError:
                    failed += 1
                time.sleep(1 / rate)
            while recovered_at is None and killed_at is not None and time.monotonic() - killed_at < 120:
                if _direct_port_answers(app):
                    recovered_at = time.monotonic()
                time.sleep(0.2)
        results[label] = {
            "calls": calls,
            "failed": failed,
            "direct_port_back_after_s": None
            if recovered_at is None or killed_at is None
            else recovered_at - killed_at,
        }
        _wait_for_replicas()
    return results


def _direct_port_answers(app: Running) -> bool:
    from cliplens_client import Client, RetryPolicy, RpcError

    try:
        with Client(app.attribution_address, timeout=5, retry=RetryPolicy(max_attempts=1)) as probe:
            probe.attribute_latents(app.sae_id, app.jpeg, ["a cat"], top_n=1)
        return True
    except RpcError:
        return False


def _wait_for_replicas(timeout_s: float = 120) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and serve.status().applications[APP].status.value != "RUNNING":
        time.sleep(1)


def markdown(results: dict[str, Any], command: str) -> str:
    load = os.getloadavg()
    lines = [
        "# Reliability: load shedding, deadlines, failover",
        "",
        f"Command: `{command}`. Demo model, final-site SAE, one image, one text, top 5. Code defaults for "
        "queues (deployment_defaults.py: Attributor 16 in progress + 32 queued, ingress 256 + 512); CPU "
        f"reservations 0.25 per replica. Machine: {os.cpu_count()} CPU cores, no GPU; load average at the "
        f"end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}.",
    ]
    for section, title in (("shedding", "Load shedding"), ("deadlines", "Deadlines")):
        for label, result in results.get(section, {}).items():
            lines += [
                "",
                f"## {title} ({label})",
                "",
                f"{result['calls']} AttributeLatents calls at once"
                + (
                    f", each with a {result['deadline_ms']:.0f} ms deadline"
                    if "deadline_ms" in result
                    else ""
                )
                + ".",
                "",
                "| status | calls | p50 ms | p99 ms |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {s} | {v['calls']} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} |"
                for s, v in result["by_status"].items()
            ]
            if "wasted" in result:
                lines += [
                    "",
                    f"Computed by the Attributor: {result['computed']:.0f}; answered OK: "
                    f"{result['by_status'].get('OK', {}).get('calls', 0)}; **wasted: {result['wasted']:.0f}**; "
                    f"dropped from a batch because the deadline had passed: {result['dropped_expired']:.0f}.",
                ]
    if "failover" in results:
        lines += [
            "",
            "## A killed Attributor replica",
            "",
            "| client | calls | failed | direct port answers again after |",
            "|---|---|---|---|",
        ]
        for label, result in results["failover"].items():
            back = result["direct_port_back_after_s"]
            lines.append(
                f"| {label} | {result['calls']} | {result['failed']} | {'-' if back is None else f'{back:.1f} s'} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["shedding", "deadlines", "failover"], action="append")
    parser.add_argument("--overload", type=int, default=600)
    parser.add_argument("--deadline-calls", type=int, default=40)
    parser.add_argument("--deadline-ms", type=float, default=400)
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--tree", type=Path, help="run the app from this checkout instead")
    parser.add_argument("--label", default="this tree", help="name of this run in the results")
    args = parser.parse_args()
    if args.tree:
        use_tree(args.tree.resolve())
    sections = args.only or ["shedding", "deadlines", "failover"]
    path = RESULTS / "reliability.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    with running_app() as app:
        if "shedding" in sections:
            results.setdefault("shedding", {})[args.label] = shedding(app, args.overload)
        if "deadlines" in sections:
            results.setdefault("deadlines", {})[args.label] = deadlines(
                app, args.deadline_calls, args.deadline_ms
            )
        if "failover" in sections:
            results["failover"] = failover(app, args.rate, args.seconds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    report = markdown(results, "python benchmarks/reliability.py " + " ".join(sys.argv[1:]))
    (RESULTS / "reliability.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
