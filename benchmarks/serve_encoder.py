"""Encoder throughput through gRPC versus an in-process loop, same JPEGs and batch size.

Served: many concurrent asyncio clients, each sending ``--images-per-call`` JPEGs per EmbedImages call
(EmbedImages is a batched rpc; one image per call is also reported with ``--images-per-call 1``); the
Encoder decodes and preprocesses in its thread pool and batches model calls across requests
(``max_batch_size`` = the loop's batch size, counted in requests).
In-process: one loop that decodes, preprocesses and encodes the same JPEGs with open_clip in batches.
Goal: served / in-process >= 0.9. Writes ``benchmarks/results/serve_encoder.{md,json}``.

Run: ``.venv/bin/python benchmarks/serve_encoder.py``
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc
import torch

from cliplens.core.models import load_clip
from cliplens.store import decode_image
from cliplens_client.v1 import common_pb2, encoder_pb2, encoder_pb2_grpc
from serve_common import APP, serve_app, write_results

SMALL = {"ray_actor_options": {"num_cpus": 0.1, "num_gpus": 0}}


def in_process(model_id: str, jpegs: list[bytes], batch: int) -> float:
    """Images per second of decode + preprocess + encode in one loop."""
    clip = load_clip(model_id, device="cpu")
    with torch.no_grad():
        clip.model.encode_image(clip.preprocess_images([decode_image(jpegs[0])]))  # type: ignore[list-item]
        start = time.perf_counter()
        for i in range(0, len(jpegs), batch):
            images = [decode_image(data) for data in jpegs[i : i + batch]]
            clip.model.encode_image(clip.preprocess_images(images))  # type: ignore[arg-type]
        return len(jpegs) / (time.perf_counter() - start)


async def served(address: str, model_id: str, jpegs: list[bytes], clients: int, per_call: int) -> float:
    """Images per second through gRPC with ``clients`` concurrent callers, ``per_call`` images per call."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        metadata = (("application", APP),)

        async def embed(chunk: list[bytes]) -> None:
            images = [common_pb2.Image(data=data) for data in chunk]
            request = encoder_pb2.EmbedImagesRequest(model_id=model_id, images=images)
            await stub.EmbedImages(request, metadata=metadata, timeout=300)

        calls = [jpegs[i : i + per_call] for i in range(0, len(jpegs), per_call)]
        await asyncio.gather(*(embed(chunk) for chunk in calls[:clients]))  # warm-up
        start = time.perf_counter()

        async def worker() -> None:
            while calls:
                await embed(calls.pop())

        await asyncio.gather(*(worker() for _ in range(clients)))
        return len(jpegs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["demo", "ViT-B-32"])
    parser.add_argument("--images", type=int, nargs="+", default=[1536, 192], help="per model")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--images-per-call", type=int, nargs="+", default=[32, 4], help="per model")
    args = parser.parse_args()
    rows = []
    for model_id, count, per_call in zip(args.models, args.images, args.images_per_call, strict=True):
        options = {name: SMALL for name in ("CliplensIngress", "SaeRunner", "Attributor")}
        options["Encoder"] = {
            "ray_actor_options": {"num_cpus": 2, "num_gpus": 0},
            "max_ongoing_requests": 4 * args.batch,
        }
        batching = {"max_batch_size": args.batch, "batch_wait_timeout_s": 0.01}
        with serve_app([model_id], options, encoder_batch=batching) as running:
            jpegs = (running.index.jpegs * (count // len(running.index.jpegs) + 1))[:count]
            baseline = in_process(model_id, jpegs, args.batch)
            through_grpc = asyncio.run(served(running.address, model_id, jpegs, args.clients, per_call))
        rows.append({"model": model_id, "images": count, "images_per_call": per_call, "grpc_images_per_s": through_grpc,
                     "in_process_images_per_s": baseline, "ratio": through_grpc / baseline})  # fmt: skip
    lines = [
        "# Encoder: images/s through gRPC vs an in-process loop (goal: ratio >= 0.9)",
        "",
        f"JPEG bytes in (CIFAR-10 32 px), embeddings out; model batch {args.batch}; {args.clients} "
        "concurrent clients, each EmbedImages call carrying the images per call in the table; Encoder "
        "replica with 2 CPUs. Machine: 2 shared CPU cores, no GPU; the in-process loop runs in the same "
        "process while the app idles.",
        "",
        "| model | images | images per call | gRPC images/s | in-process images/s | ratio | goal |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['model']} | {r['images']} | {r['images_per_call']} | {r['grpc_images_per_s']:.1f} | {r['in_process_images_per_s']:.1f} | "
            f"{r['ratio']:.2f} | {'met' if r['ratio'] >= 0.9 else 'NOT met'} |"
            for r in rows
        ),
        "",
        "Run: `.venv/bin/python benchmarks/serve_encoder.py "
        f"--images {' '.join(map(str, args.images))} --images-per-call {' '.join(map(str, args.images_per_call))}`",
    ]
    write_results(
        "serve_encoder", {"rows": rows, "batch": args.batch, "clients": args.clients}, "\n".join(lines) + "\n"
    )


if __name__ == "__main__":
    main()
