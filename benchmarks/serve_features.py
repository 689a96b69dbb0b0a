"""TopActivations through gRPC from Redis: latency at fixed request rates up to saturation.

The load comes from ghz (a Go gRPC load generator, `make ghz`), at a fixed rate per step (open
loop). Two parts:

- The curve: one step per rate up to the first saturated one, p50/p99 latency, achieved rate and
  errors, for both ways in: the FeatureGateway's direct port (the low-latency path) and Serve's gRPC
  proxy (port 9000, through the ingress replica); and grpc.health Check on the direct port (the same
  server, answering without cliplens code or Redis).
- The goal, 100 requests/s: ``--rounds`` rounds, each path in turn, pooled over every request of
  every round (a p99 of one short step swings with this shared VM's scheduling). Beside the direct
  port's TopActivations and health Check, a plain grpc.aio health server outside Ray
  (``bare_health_server.py``) gives the floor of any Python gRPC call on this machine.

Goal at 100 requests/s on the direct port: p50 <= 3 ms and p99 <= 10 ms.
Writes ``benchmarks/results/serve_features.{md,json}``.

Run: ``make ghz && .venv/bin/python benchmarks/serve_features.py``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2

from cliplens.store.local_stack import free_ports
from serve_common import APP, ROOT, cpu_times, serve_app, steal_share, write_results

GHZ = ROOT / ".tools" / "bin" / "ghz"
PROTOS = ROOT / "protos"
SMALL = {"ray_actor_options": {"num_cpus": 0.5, "num_gpus": 0}}
PATHS = ("direct port", "Serve proxy", "direct port, health Check")
BARE = "bare grpc.aio health server, outside Ray"
GOAL_PATHS = (PATHS[0], PATHS[2], BARE)
GOAL_RATE = 100
CONCURRENCY = 16
WARM_UP = 20  # requests sent before each step's measured ones
SATURATED = 0.9  # share of the rate a step that keeps up reaches, below which it is saturated


def ghz(address: str, call: list[str], rate: float, seconds: float) -> dict[str, Any]:
    """One open-loop step of ``rate`` requests/s for ``seconds`` (after ``WARM_UP`` requests); the
    summary, and ``latencies_ms`` of every answered request. ghz's achieved rate counts the warm-up
    requests' time too, so a step that keeps up reaches ``rate * total / (total + WARM_UP)``."""
    total = int(rate * seconds)
    argv = [str(GHZ), "--insecure", "--rps", str(int(rate)), "-n", str(total + WARM_UP)]
    argv += ["--skipFirst", str(WARM_UP), "-c", str(CONCURRENCY), "--connections", "1", "--timeout", "5s"]
    argv += ["-O", "json", *call, address]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ghz failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    report = json.loads(done.stdout)
    latencies = [d["latency"] / 1e6 for d in report.get("details") or [] if d["status"] == "OK"]
    errors = sum(n for code, n in (report.get("statusCodeDistribution") or {}).items() if code != "OK")
    kept_up = rate * total / (total + WARM_UP)
    return {"rate": rate, "achieved_rps": report["rps"], "kept_up_rps": kept_up, **percentiles(latencies),
            "errors": errors, "latencies_ms": latencies}  # fmt: skip


def load_curve(target: tuple[str, list[str]], rates: list[float], seconds: float) -> list[dict[str, Any]]:
    """One step per rate, up to and including the first saturated one."""
    steps = []
    for rate in rates:
        steps.append(ghz(*target, rate, seconds))
        if saturated(steps[-1]):
            break
    return steps


def saturated(step: dict[str, Any]) -> bool:
    """The server no longer keeps up: under ``SATURATED`` of a keeping-up step's rate, or errors."""
    return step["achieved_rps"] < SATURATED * step["kept_up_rps"] or step["errors"] > 0


def percentiles(latencies_ms: list[float]) -> dict[str, float]:
    if not latencies_ms:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    p50, p99 = np.percentile(latencies_ms, [50, 99])
    return {"p50_ms": float(p50), "p99_ms": float(p99), "mean_ms": float(np.mean(latencies_ms))}


def top_activations_call(sae_id: str, latents: list[int]) -> list[str]:
    requests = [{"sae_id": sae_id, "latent": latent, "k": 16} for latent in latents]  # used in turn
    return ["--proto", str(PROTOS / "cliplens" / "v1" / "features.proto"), "-i", str(PROTOS),
            "--call", "cliplens.v1.FeatureService.TopActivations", "-d", json.dumps(requests),
            "-m", json.dumps({"application": APP})]  # fmt: skip


def health_call(directory: Path) -> list[str]:
    """grpc.health.v1 Check, described by a protoset written from grpcio-health-checking's descriptor."""
    protoset = descriptor_pb2.FileDescriptorSet()
    health_pb2.DESCRIPTOR.CopyToProto(protoset.file.add())
    path = directory / "health.protoset"
    path.write_bytes(protoset.SerializeToString())
    return ["--protoset", str(path), "--call", "grpc.health.v1.Health.Check", "-d", "{}"]


@contextmanager
def bare_health_server() -> Iterator[str]:
    (port,) = free_ports(1)
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("bare_health_server.py")), str(port)]
    )
    try:
        time.sleep(2.0)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[25, 50, 100, 200, 400, 800, 1600, 3200],
        help="offered rates of the curve; a path stops after its first saturated step",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="per rate of the curve")
    parser.add_argument("--rounds", type=int, default=5, help=f"rounds at {GOAL_RATE} requests/s")
    parser.add_argument("--round-seconds", type=float, default=20.0)
    parser.add_argument(
        "--settle-s", type=float, default=90.0, help="idle time after start-up (replicas finish loading)"
    )
    args = parser.parse_args()
    if not GHZ.is_file():
        parser.error(f"{GHZ} is missing: run `make ghz`")
    names = ("CliplensIngress", "Encoder", "SaeRunner", "Attributor", "FeatureGateway")
    options = {name: SMALL for name in names}
    curves: dict[str, list[dict]] = {}
    rounds: dict[str, list[dict]] = {path: [] for path in GOAL_PATHS}
    with (
        serve_app(["demo"], options) as running,
        tempfile.TemporaryDirectory() as tmp,
        bare_health_server() as bare_address,
    ):
        latents = sorted({row.latent for row in running.index.topk["demo-final-topk"]})
        time.sleep(args.settle_s)
        lookup, check = top_activations_call("demo-final-topk", latents), health_call(Path(tmp))
        targets = {
            PATHS[0]: (running.feature_address, lookup),
            PATHS[1]: (running.address, lookup),
            PATHS[2]: (running.feature_address, check),
            BARE: (bare_address, check),
        }
        before = cpu_times()
        for _ in range(args.rounds):
            for path in GOAL_PATHS:
                rounds[path].append(ghz(*targets[path], GOAL_RATE, args.round_seconds))
        steal = steal_share(before, cpu_times())
        for path in PATHS:
            curves[path] = load_curve(targets[path], args.rates, args.seconds)
    pooled = {
        path: percentiles([ms for r in steps for ms in r["latencies_ms"]]) for path, steps in rounds.items()
    }
    goal = pooled[PATHS[0]]
    met = goal["p50_ms"] <= 3 and goal["p99_ms"] <= 10
    lines = [
        "# TopActivations from Redis through gRPC",
        "",
        f"Goal at {GOAL_RATE} requests/s on the direct port: p50 <= 3 ms, p99 <= 10 ms: "
        f"**{'met' if met else 'NOT met'}** (p50 {goal['p50_ms']:.2f} ms, p99 {goal['p99_ms']:.2f} ms, "
        f"pooled over {args.rounds} rounds of {args.round_seconds:.0f} s).",
        "",
        "Direct port: the FeatureGateway replica's own grpc.aio server (`feature_port`). Serve proxy: "
        "port 9000, Serve's gRPC proxy, then the ingress replica. Both read the same Redis with the same "
        "code. Health Check on the direct port: the same server answering without cliplens code or Redis. "
        "Bare health server: a plain grpc.aio process outside Ray, the floor of any Python gRPC call here. "
        "Machine: 2 shared CPU cores, no GPU; ghz, Ray, replicas and Redis on the same cores; "
        f"RAY_SERVE_THROUGHPUT_OPTIMIZED=1. CPU steal (time the hypervisor gave these vCPUs to other "
        f"guests) during the rounds: {'not measured' if steal is None else format(steal, '.1%')}.",
        "",
        f"## At {GOAL_RATE} requests/s, {args.rounds} rounds (paths in turn within each round)",
        "",
        "| path | pooled p50 ms | pooled p99 ms | p99 ms of each round | errors |",
        "|---|---|---|---|---|",
        *(
            f"| {path} | {pooled[path]['p50_ms']:.2f} | {pooled[path]['p99_ms']:.2f} | "
            f"{' / '.join(format(r['p99_ms'], '.1f') for r in steps)} | {sum(r['errors'] for r in steps)} |"
            for path, steps in rounds.items()
        ),
        "",
        "## Latency versus load (one step per rate)",
        "",
        f"Each path runs up to its first saturated step (under {SATURATED:.0%} of the rate a step that "
        f"keeps up reaches, or errors), marked *saturated*; {CONCURRENCY} ghz workers on one connection.",
        "",
        "| path | offered req/s | achieved req/s | p50 ms | p99 ms | mean ms | errors |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {path} | {p['rate']:.0f} | {p['achieved_rps']:.1f}{' *saturated*' if saturated(p) else ''} | "
            f"{p['p50_ms']:.2f} | {p['p99_ms']:.2f} | {p['mean_ms']:.2f} | {p['errors']} |"
            for path, curve in curves.items()
            for p in curve
        ),
        "",
        "Run: `make ghz && .venv/bin/python benchmarks/serve_features.py`",
    ]

    def summary(step: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in step.items() if key != "latencies_ms"}

    payload = {
        "goal_met": met,
        "goal_rate": GOAL_RATE,
        "cpu_steal_during_rounds": steal,
        "pooled": pooled,
        "rounds": {path: [summary(r) for r in steps] for path, steps in rounds.items()},
        "curves": {path: [summary(p) for p in curve] for path, curve in curves.items()},
    }
    write_results("serve_features", payload, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
