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
import statistics
import time

import grpc
import torch
from PIL import Image

from cliplens.core.models import load_clip
from cliplens.serve.request_checks import decode_rgb
from cliplens.store import DEFAULT_MAX_PIXELS as MAX_PIXELS
from cliplens_client.v1 import common_pb2, encoder_pb2, encoder_pb2_grpc
from serve_common import APP, serve_app, synchronize, write_results

SMALL = {"ray_actor_options": {"num_cpus": 0.1, "num_gpus": 0}}


def in_process(
    model_id: str,
    jpegs: list[bytes],
    batch: int,
    batched_normalise: bool = False,
    device: str = "cpu",
    dtype: str = "fp32",
) -> float:
    """Images per second of decode + preprocess + encode in one loop, the model on ``device``.

    Preprocessing is open_clip's own per-image transform, or with ``batched_normalise`` cliplens's
    split of it (resize and crop per image, one normalisation per batch: the served path's way).
    """
    clip = load_clip(model_id, device=device, dtype=dtype)

    def pixels(images: list[Image.Image]) -> torch.Tensor:
        if batched_normalise:
            return clip.preprocess_images(images)
        return torch.stack([clip.preprocess(image) for image in images]).to(clip.device, clip.dtype)

    with torch.no_grad():
        clip.model.encode_image(pixels([decode_rgb("warm-up", jpegs[0], MAX_PIXELS)]))
        synchronize(clip.device)
        start = time.perf_counter()
        for i in range(0, len(jpegs), batch):
            images = [decode_rgb("image", data, MAX_PIXELS) for data in jpegs[i : i + batch]]
            clip.model.encode_image(pixels(images))
        synchronize(clip.device)
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
    parser.add_argument("--images", type=int, nargs="+", default=[3072, 192], help="per model")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--images-per-call", type=int, nargs="+", default=[32, 4], help="per model")
    parser.add_argument("--encoder-replicas", type=int, default=2)
    parser.add_argument(
        "--encoder-cpus", type=float, default=1, help="per replica; Ray sets its torch threads to this"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating measurements; each figure is their median"
    )
    args = parser.parse_args()
    rows = []
    for model_id, count, per_call in zip(args.models, args.images, args.images_per_call, strict=True):
        options = {name: SMALL for name in ("CliplensIngress", "SaeRunner", "Attributor")}
        options["Encoder"] = {
            "num_replicas": args.encoder_replicas,
            "ray_actor_options": {"num_cpus": args.encoder_cpus, "num_gpus": 0},
            "max_ongoing_requests": 4 * args.batch,
        }
        batching = {"max_batch_size": args.batch, "batch_wait_timeout_s": 0.01}
        with serve_app([model_id], options, encoder_batch=batching) as running:
            jpegs = (running.index.jpegs * (count // len(running.index.jpegs) + 1))[:count]
            rounds = [
                (
                    in_process(model_id, jpegs, args.batch),
                    in_process(model_id, jpegs, args.batch, batched_normalise=True),
                    asyncio.run(served(running.address, model_id, jpegs, args.clients, per_call)),
                )
                for _ in range(args.rounds)
            ]
            baseline, batched, through_grpc = (
                statistics.median(column) for column in zip(*rounds, strict=True)
            )
        rows.append({"model": model_id, "images": count, "images_per_call": per_call, "grpc_images_per_s": through_grpc,
                     "in_process_images_per_s": baseline, "ratio": through_grpc / baseline,
                     "in_process_batched_normalise_images_per_s": batched, "rounds": rounds})  # fmt: skip
    lines = [
        "# Encoder: images/s through gRPC vs an in-process loop (goal: ratio >= 0.9)",
        "",
        f"JPEG bytes in (CIFAR-10 32 px), embeddings out; model batch {args.batch}; {args.clients} "
        "concurrent clients, each EmbedImages call carrying the images per call in the table; "
        f"{args.encoder_replicas} Encoder replica(s) of {args.encoder_cpus:g} CPU(s) (Ray gives each as "
        "many torch threads), JPEG decoding in each replica's thread pool. Machine: 2 shared CPU cores, "
        "no GPU; the in-process loop (torch's default threads) runs in the benchmark's process while the "
        f"app idles. Each figure is the median of {args.rounds} alternating rounds. The in-process loop "
        "preprocesses with open_clip's own per-image "
        "transform (the ratio's baseline); the served Encoder resizes and crops per image in its thread "
        'pool and normalises each model batch at once (same values, bit for bit), which the "batched '
        'normalisation" column measures in process.',
        "",
        "| model | images | images per call | gRPC images/s | in-process images/s | ratio | goal | in-process, batched normalisation | ratio per round |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['model']} | {r['images']} | {r['images_per_call']} | {r['grpc_images_per_s']:.1f} | {r['in_process_images_per_s']:.1f} | "
            f"{r['ratio']:.2f} | {'met' if r['ratio'] >= 0.9 else 'NOT met'} | "
            f"{r['in_process_batched_normalise_images_per_s']:.1f} | "
            f"{' / '.join(f'{grpc / raw:.2f}' for raw, _, grpc in r['rounds'])} |"
            for r in rows
        ),
        "",
        "Run: `.venv/bin/python benchmarks/serve_encoder.py "
        f"--models {' '.join(args.models)} --images {' '.join(map(str, args.images))} "
        f"--images-per-call {' '.join(map(str, args.images_per_call))} "
        f"--encoder-replicas {args.encoder_replicas} --encoder-cpus {args.encoder_cpus:g}`",
    ]
    write_results(
        "serve_encoder", {"rows": rows, "batch": args.batch, "clients": args.clients}, "\n".join(lines) + "\n"
    )


if __name__ == "__main__":
    main()
