"""TopActivations through gRPC from Redis: latency at fixed request rates up to saturation.

The load comes from ghz (a Go gRPC load generator, `make ghz`), at a fixed rate per step (open
loop); each step reports p50/p99 latency, the achieved rate and errors, for both ways in: the
FeatureGateway's direct port (the low-latency path) and Serve's gRPC proxy (port 9000, through the
ingress replica); and, as the floor, grpc.health Check on the direct port (the same server,
answering without cliplens code or Redis). Goal at 100 requests/s: p50 <= 3 ms and p99 <= 10 ms.
Writes ``benchmarks/results/serve_features.{md,json}``.

Run: ``make ghz && .venv/bin/python benchmarks/serve_features.py``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2

from serve_common import APP, ROOT, serve_app, write_results

GHZ = ROOT / ".tools" / "bin" / "ghz"
PROTOS = ROOT / "protos"
SMALL = {"ray_actor_options": {"num_cpus": 0.5, "num_gpus": 0}}
PATHS = ("direct port", "Serve proxy", "direct port, health Check")
CONCURRENCY = 16


def ghz(address: str, call: list[str], rate: float, seconds: float) -> dict[str, Any]:
    """One open-loop step of ``rate`` requests/s for ``seconds`` (after 20 warm-up requests)."""
    total = int(rate * seconds)
    argv = [str(GHZ), "--insecure", "--rps", str(int(rate)), "-n", str(total + 20), "--skipFirst", "20"]
    argv += ["-c", str(CONCURRENCY), "--connections", "1", "--timeout", "5s", "-O", "json", *call, address]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ghz failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    report = json.loads(done.stdout)
    percentiles = {p["percentage"]: p["latency"] / 1e6 for p in report["latencyDistribution"] or []}
    errors = sum(n for code, n in (report.get("statusCodeDistribution") or {}).items() if code != "OK")
    return {"rate": rate, "achieved_rps": report["rps"], "p50_ms": percentiles.get(50, float("nan")),
            "p99_ms": percentiles.get(99, float("nan")), "mean_ms": report["average"] / 1e6, "errors": errors}  # fmt: skip


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[25, 50, 100, 150, 200, 300, 400])
    parser.add_argument("--seconds", type=float, default=8.0, help="per rate")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument(
        "--settle-s", type=float, default=90.0, help="idle time after start-up (replicas finish loading)"
    )
    args = parser.parse_args()
    if not GHZ.is_file():
        parser.error(f"{GHZ} is missing: run `make ghz`")
    names = ("CliplensIngress", "Encoder", "SaeRunner", "Attributor", "FeatureGateway")
    options = {name: SMALL for name in names}
    curves: dict[str, list[dict]] = {}
    with serve_app(["demo"], options) as running, tempfile.TemporaryDirectory() as tmp:
        latents = sorted({row.latent for row in running.index.topk["demo-final-topk"]})
        time.sleep(args.settle_s)
        lookup = top_activations_call("demo-final-topk", latents)
        targets = {
            PATHS[0]: (running.feature_address, lookup),
            PATHS[1]: (running.address, lookup),
            PATHS[2]: (running.feature_address, health_call(Path(tmp))),
        }
        for path in args.paths:
            address, call = targets[path]
            curves[path] = [ghz(address, call, rate, args.seconds) for rate in args.rates]
    at_100 = {path: next(point for point in curve if point["rate"] == 100) for path, curve in curves.items()}
    met = {path: p["p50_ms"] <= 3 and p["p99_ms"] <= 10 for path, p in at_100.items() if path != PATHS[2]}
    lines = [
        "# TopActivations from Redis through gRPC",
        "",
        "Goal at 100 requests/s: p50 <= 3 ms, p99 <= 10 ms. "
        + "; ".join(
            f"{path}: **{'met' if met[path] else 'NOT met'}** (p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms)"
            for path, p in at_100.items()
            if path in met
        )
        + ".",
        "",
        "Direct port: the FeatureGateway replica's own grpc.aio server (`feature_port`). Serve proxy: "
        "port 9000, Serve's gRPC proxy, then the ingress replica. Both read the same Redis with the same "
        "code. Health Check on the direct port: the same server answering without cliplens code or Redis, "
        "the floor of any call on this machine while Ray runs. Machine: 2 shared CPU cores, no GPU; client, Ray, replicas and Redis on the same cores; "
        "RAY_SERVE_THROUGHPUT_OPTIMIZED=1.",
        "",
        "| path | offered req/s | achieved req/s | p50 ms | p99 ms | mean ms | errors |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {path} | {p['rate']:.0f} | {p['achieved_rps']:.1f} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
            f"{p['mean_ms']:.2f} | {p['errors']} |"
            for path, curve in curves.items()
            for p in curve
        ),
        "",
        "Run: `make ghz && .venv/bin/python benchmarks/serve_features.py`",
    ]
    payload = {"curves": curves, "goal_met": met}
    write_results("serve_features", payload, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
