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
3. **Failover**: with two Attributor replicas, a client sends AttributeLatents at ``--rate`` per
   second while each replica in turn is killed: with the direct port only, with
   ``Client([direct port, 9000])``, and with port 9000 only. Calls lost.
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
def running_app(overrides: dict[str, dict[str, Any]] | None = None) -> Iterator[Running]:
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
                compose(
                    settings, {n: {"ray_actor_options": SMALL, **(overrides or {}).get(n, {})} for n in names}
                ),
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


async def concurrent_calls(
    app: Running, n: int, timeout_s: float, per_channel: int = 50
) -> list[tuple[str, float]]:
    """``n`` AttributeLatents calls at once through port 9000, ``per_channel`` per connection as
    separate clients would open them: (status name, seconds) each. The
    ``cliplens-timeout-ms`` metadata carries the deadline, as the cliplens client sends it."""
    import grpc

    from cliplens_client.v1 import attribution_pb2_grpc

    request = attribute_request(app)
    metadata = (("application", APP), ("cliplens-timeout-ms", str(int(timeout_s * 1000))))
    channels = [grpc.aio.insecure_channel(app.address) for _ in range(-(-n // per_channel))]
    stubs = [attribution_pb2_grpc.AttributionServiceStub(channel) for channel in channels]
    try:
        for stub in stubs:  # connected and warm
            await stub.AttributeLatents(request, metadata=metadata, timeout=60)

        async def one(stub: Any) -> tuple[str, float]:
            start = time.perf_counter()
            try:
                await stub.AttributeLatents(request, metadata=metadata, timeout=timeout_s)
                return "OK", time.perf_counter() - start
            except grpc.aio.AioRpcError as error:
                return error.code().name, time.perf_counter() - start

        return list(await asyncio.gather(*(one(stubs[i % len(stubs)]) for i in range(n))))
    finally:
        for channel in channels:
            await channel.close()


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
    """The burst's outcomes seen by the caller, and the rejections' latency inside the ingress (its
    request-latency histogram: from the call's arrival at the ingress to its answer)."""
    before = latency_buckets(app.metrics_port, "AttributeLatents", "RESOURCE_EXHAUSTED")
    start = time.perf_counter()
    outcomes = asyncio.run(concurrent_calls(app, n, timeout_s=60))
    seconds = time.perf_counter() - start
    time.sleep(15)
    after = latency_buckets(app.metrics_port, "AttributeLatents", "RESOURCE_EXHAUSTED")
    counts = {edge: after.get(edge, 0.0) - before.get(edge, 0.0) for edge in after}
    return {
        "calls": n,
        "seconds": seconds,
        "by_status": by_status(outcomes),
        "ingress_rejection_ms": {"p50": bucket_quantile(counts, 0.5), "p99": bucket_quantile(counts, 0.99)},
    }


def latency_buckets(port: int, method: str, status: str) -> dict[float, float]:
    """Cumulative counts by upper bound (ms) of the ingress's request-latency histogram for one
    method and status, summed over replicas."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    buckets: dict[float, float] = {}
    for labels, value in re.findall(
        r"^ray_cliplens_request_latency_ms_bucket{([^}]*)} ([0-9.e+-]+)$", text, re.M
    ):
        if f'method="{method}"' in labels and f'status="{status}"' in labels:
            edge = re.search(r'le="([^"]+)"', labels)
            if edge:
                bound = float("inf") if edge.group(1) == "+Inf" else float(edge.group(1))
                buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return buckets


def bucket_quantile(cumulative: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` (an upper estimate)."""
    total = max(cumulative.values(), default=0.0)
    for bound in sorted(cumulative):
        if total and cumulative[bound] >= q * total:
            return bound
    return float("nan")


def deadlines(app: Running, n: int, deadline_ms: float) -> dict[str, Any]:
    """Calls through port 9000, and what the Attributor computed for them."""
    name, op = "cliplens_batch_requests_sum", "attribute_latents"
    before = settled_metric(app.metrics_port, name, op)
    dropped_before = metric_total(app.metrics_port, "cliplens_expired_requests_total", op)
    outcomes = asyncio.run(concurrent_calls(app, n, deadline_ms / 1000))
    time.sleep(15)  # let the last batches finish and their metrics reach the exporter
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
    """Calls at ``rate``/s for ``seconds`` per client kind while each Attributor replica in turn is
    killed (at a third and at two thirds of the run): a direct-port client is connected to one of
    them, so one of the kills hits it whichever it is."""
    import ray

    from cliplens_client import Client, RetryPolicy, RpcError

    results = {}
    kinds = (
        ("direct port only", [app.attribution_address]),
        ("direct port, then 9000", [app.attribution_address, app.address]),
        ("port 9000 only", [app.address]),
    )
    for label, targets in kinds:
        with Client(
            targets if len(targets) > 1 else targets[0], timeout=30, retry=RetryPolicy(max_attempts=1)
        ) as client:
            client.attribute_latents(app.sae_id, app.jpeg, ["a cat"], top_n=3)  # connected and warm
            victims = sorted(a["name"] for a in _attributors())
            failed, calls, kills = 0, 0, list[float]()
            start = time.monotonic()
            while time.monotonic() - start < seconds:
                if victims and time.monotonic() - start > seconds * (len(kills) + 1) / (
                    len(victims) + len(kills) + 1
                ):
                    victim = victims.pop(0)
                    live = _attributors()
                    # Serve may have replaced a replica meanwhile: then kill one not killed yet.
                    [actor, *_] = [a for a in live if a["name"] == victim] or live
                    ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
                    kills.append(time.monotonic() - start)
                calls += 1
                try:
                    client.attribute_latents(app.sae_id, app.jpeg, ["a cat"], top_n=3)
                except RpcError:
                    failed += 1
                time.sleep(1 / rate)
        results[label] = {"calls": calls, "failed": failed, "kills_at_s": kills}
        _wait_for_replicas()
    return results


def _attributors() -> list[dict[str, str]]:
    import ray

    return [a for a in ray.util.list_named_actors(all_namespaces=True) if f"{APP}#Attributor#" in a["name"]]


def _wait_for_replicas(timeout_s: float = 180) -> None:
    """Until the app runs its replicas again (the killed ones replaced)."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app = serve.status().applications[APP]
        if app.status.value == "RUNNING" and all(
            d.status.value == "HEALTHY" for d in app.deployments.values()
        ):
            return
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
            inside = result.get("ingress_rejection_ms", {})
            if inside and inside["p50"] == inside["p50"]:  # not NaN: some calls were rejected
                lines += [
                    "",
                    f"Inside the ingress (arrival to answer; histogram bucket bounds): rejection p50 <= "
                    f"{inside['p50']:g} ms, p99 <= {inside['p99']:g} ms.",
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
            "## Killed Attributor replicas",
            "",
            "Two Attributor replicas (both on the direct port, SO_REUSEPORT), each killed in turn while a "
            "client sends AttributeLatents at a fixed rate with no retries (one attempt per target).",
            "",
            "| client | calls | failed | kills at |",
            "|---|---|---|---|",
        ]
        for label, result in results["failover"].items():
            kills = ", ".join(f"{s:.0f} s" for s in result["kills_at_s"])
            lines.append(f"| {label} | {result['calls']} | {result['failed']} | {kills} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["shedding", "deadlines", "failover"], action="append")
    parser.add_argument("--overload", type=int, default=600)
    parser.add_argument("--deadline-calls", type=int, default=40)
    parser.add_argument("--deadline-ms", type=float, default=400)
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--tree", type=Path, help="run the app from this checkout instead")
    parser.add_argument("--label", default="this tree", help="name of this run in the results")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="DEPLOYMENT.OPTION=INT",
        help="override a deployment option of the code's defaults, e.g. CliplensIngress.max_queued_requests=16",
    )
    args = parser.parse_args()
    if args.tree:
        use_tree(args.tree.resolve())
    sections = args.only or ["shedding", "deadlines", "failover"]
    path = RESULTS / "reliability.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.set:
        target, _, value = item.partition("=")
        deployment, _, option = target.partition(".")
        overrides.setdefault(deployment, {})[option] = int(value)
    command = "python benchmarks/reliability.py " + " ".join(sys.argv[1:])

    def save() -> None:
        """Write what is measured so far (each section as soon as it ends)."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
        (RESULTS / "reliability.md").write_text(markdown(results, command))

    if {"shedding", "deadlines"} & set(sections):
        with running_app(overrides) as app:
            if "shedding" in sections:
                results.setdefault("shedding", {})[args.label] = shedding(app, args.overload)
                save()
            if "deadlines" in sections:
                results.setdefault("deadlines", {})[args.label] = deadlines(
                    app, args.deadline_calls, args.deadline_ms
                )
                save()
    if "failover" in sections:
        two_attributors = {**overrides, "Attributor": {**overrides.get("Attributor", {}), "num_replicas": 2}}
        with running_app(two_attributors) as app:
            results["failover"] = failover(app, args.rate, args.seconds)
            save()
    print((RESULTS / "reliability.md").read_text())


if __name__ == "__main__":
    main()
