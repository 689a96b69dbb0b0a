"""TopActivations through gRPC from Redis: latency at fixed request rates up to saturation.

An asyncio client sends requests on a fixed schedule (open loop, bounded in count and time) over
loopback; each rate reports p50/p99 latency and the achieved rate. Goal at 100 requests/s:
p50 <= 3 ms and p99 <= 10 ms. Writes ``benchmarks/results/serve_features.{md,json}``.

Run: ``.venv/bin/python benchmarks/serve_features.py``
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc

from cliplens_client.v1 import features_pb2, features_pb2_grpc
from serve_common import APP, serve_app, summary_ms, write_results

SMALL = {"ray_actor_options": {"num_cpus": 0.5, "num_gpus": 0}}


async def at_rate(
    address: str, sae_id: str, latents: list[int], rate: float, count: int, limit_s: float
) -> dict:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = features_pb2_grpc.FeatureServiceStub(channel)
        metadata = (("application", APP),)
        latencies: list[float] = []
        errors = 0

        async def one(i: int) -> None:
            nonlocal errors
            start = time.perf_counter()
            try:
                request = features_pb2.TopActivationsRequest(
                    sae_id=sae_id, latent=latents[i % len(latents)], k=16
                )
                await stub.TopActivations(request, metadata=metadata, timeout=5)
                latencies.append(time.perf_counter() - start)
            except grpc.RpcError:
                errors += 1

        for i in range(20):  # warm-up
            await one(i)
        latencies.clear()
        tasks = []
        begin = time.perf_counter()
        for i in range(count):
            due = begin + i / rate
            if due - begin > limit_s:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
    return {"rate": rate, "achieved_rps": len(latencies) / elapsed, "errors": errors, **summary_ms(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[25, 50, 100, 150, 200, 300, 400])
    parser.add_argument("--seconds", type=float, default=8.0, help="per rate")
    args = parser.parse_args()
    options = {name: SMALL for name in ("CliplensIngress", "Encoder", "SaeRunner", "Attributor")}
    with serve_app(["demo"], options) as running:
        latents = sorted({row.latent for row in running.index.topk["demo-final-topk"]})
        curve = [
            asyncio.run(
                at_rate(
                    running.address, "demo-final-topk", latents, rate, int(rate * args.seconds), args.seconds
                )
            )
            for rate in args.rates
        ]
    at_100 = next(point for point in curve if point["rate"] == 100)
    verdict = "met" if at_100["p50_ms"] <= 3 and at_100["p99_ms"] <= 10 else "NOT met"
    lines = [
        "# TopActivations from Redis through Ray Serve gRPC",
        "",
        f"Goal at 100 requests/s: p50 <= 3 ms, p99 <= 10 ms: **{verdict}** "
        f"(p50 {at_100['p50_ms']:.2f} ms, p99 {at_100['p99_ms']:.2f} ms).",
        "Machine: 2 shared CPU cores, no GPU; client, proxy, ingress replica and Redis on the same cores; "
        "RAY_SERVE_THROUGHPUT_OPTIMIZED=1.",
        "",
        "| offered req/s | achieved req/s | p50 ms | p99 ms | mean ms | errors |",
        "|---|---|---|---|---|---|",
        *(
            f"| {p['rate']:.0f} | {p['achieved_rps']:.1f} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
            f"{p['mean_ms']:.2f} | {p['errors']} |"
            for p in curve
        ),
        "",
        "Run: `.venv/bin/python benchmarks/serve_features.py`",
    ]
    write_results("serve_features", {"curve": curve, "goal_met": verdict == "met"}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
