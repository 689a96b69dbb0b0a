"""The ``make demo`` pipeline: the whole product, offline, on one machine.

1. start a local stack: Ray, plus redis-server and SeaweedFS (S3) when installed, else the embedded
   defaults (a local-directory store, and no cache: the feature service answers from the store);
2. zero-shot accuracy of the demo model on the shipped CIFAR-10 sample;
3. ``extract`` the sample's ``final`` embeddings (Ray Data), ``train-sae`` a TopK SAE, ``topk``;
4. start the Serve app (gRPC) and call it with the Python client: attribution of a sample image
   against a few prompts, a decomposition heatmap, the top latents with labels and top images;
5. write an HTML report, then shut everything down.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import torch
from PIL import Image

from cliplens.core.models import load_clip
from cliplens.core.sae.train import TensorBatches, TrainConfig, evaluate_sae
from cliplens.core.zeroshot import SaeEvalRow, format_sae_table, text_classifier, zero_shot_accuracy
from cliplens.store.local_stack import S3_ACCESS_KEY, S3_SECRET_KEY, WEED, RedisServer, SeaweedS3, free_ports
from cliplens.demo.report import LatentPanel, render_report
from cliplens.demo.sample import SAMPLE_PARQUET, class_names, load_labelled_parquet
from cliplens.jobs.extract import ExtractConfig, run_extract
from cliplens.jobs.sae_training import SaeJob, train_sae_on_run
from cliplens.jobs.topk import compute_topk, fill_cache, save_results
from cliplens.store import ActivationRun, ObjectStore, TopKCache, open_store

SAE_ID = "demo-topk"
PROMPT_CLASSES = ("cat", "dog", "truck", "airplane", "frog")


@dataclass
class LocalStack:
    store_uri: str
    redis_url: str | None
    env: dict[str, str]


@contextlib.contextmanager
def local_stack(workdir: Path) -> Iterator[LocalStack]:
    """Redis and an S3 server when their binaries exist; otherwise a local store and no cache."""
    redis = RedisServer(workdir / "redis") if shutil.which("redis-server") else None
    s3 = SeaweedS3(workdir / "s3") if WEED.exists() else None
    try:
        env: dict[str, str] = {}
        if redis is not None:
            (workdir / "redis").mkdir(parents=True, exist_ok=True)
            redis.start()
            print(f"stack: redis-server at {redis.url}")
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
        if redis is None:
            print("stack: no redis-server installed; features are served from the store (degraded)")
        yield LocalStack(store_uri, redis.url if redis else None, env)
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
    classifier = text_classifier(clip, class_names())
    base = zero_shot_accuracy(clip, images, sample.labels, classifier)
    sae = load_sae_from_store(store, SAE_ID, clip.device).sae
    with torch.no_grad():
        embeddings = clip.model.encode_image(images).float()
    metrics = evaluate_sae(sae, TensorBatches(embeddings, 500, shuffle=False))
    with_sae = zero_shot_accuracy(clip, images, sample.labels, classifier, sae=sae)
    print(f"zero-shot top-1 of the demo model on {len(sample.labels)} CIFAR-10 test images: {base:.4f}")
    row = SaeEvalRow(SAE_ID, metrics.l0, metrics.mse, metrics.r2, metrics.dead_fraction, base, with_sae)
    return format_sae_table([row])


def build_index(store: ObjectStore, redis_url: str | None, epochs: int) -> None:
    """extract -> train-sae -> topk, exactly as the CLI jobs do them."""
    summary = run_extract(ExtractConfig(inputs=str(SAMPLE_PARQUET), model="demo", rows_per_shard=500), store)
    print("\n".join(f"extract: {line}" for line in summary.lines()))
    run_id = summary.runs["final"]
    job = SaeJob(
        run_id=run_id,
        sae_id=SAE_ID,
        arch="topk",
        d_sae=1024,
        fields={"k": 16, "aux_k": 64},
        train=TrainConfig(epochs=epochs, warmup_steps=20, device="cpu"),
        batch_size=128,
    )
    sae, _, history = train_sae_on_run(store, job)
    last = history[-1].metrics
    print(f"train-sae: {SAE_ID}: L0 {last.l0:.1f}, R² {last.r2:.3f}, dead {last.dead_fraction:.3f}")
    results = compute_topk(ActivationRun(store, run_id), sae, SAE_ID, k=16)
    save_results(store, run_id, results)
    if redis_url is not None:
        fill_cache(TopKCache(redis_url, k=16), results)
        print("topk: stored and loaded into Redis")


def class_label(label: str | None) -> str:
    """CIFAR-10 class name of a stored label (the sample stores class indices)."""
    names = class_names()
    return (
        names[int(label)]
        if label is not None and label.isdigit() and int(label) < len(names)
        else label or "?"
    )


def sample_images() -> dict[str, tuple[Image.Image, bytes, str]]:
    table = pq.read_table(SAMPLE_PARQUET, columns=["key", "jpg", "label"]).to_pylist()
    names = class_names()
    return {
        row["key"]: (Image.open(io.BytesIO(row["jpg"])).convert("RGB"), row["jpg"], names[row["label"]])
        for row in table
    }


@contextlib.contextmanager
def serve_app(stack: LocalStack, grpc_port: int, http_port: int) -> Iterator[str]:
    from ray import serve
    from ray.serve.config import gRPCOptions

    from cliplens.serve.app import GRPC_SERVICER_FUNCTIONS, compose
    from cliplens.serve.settings import AppSettings

    small = {"ray_actor_options": {"num_cpus": 0.25, "num_gpus": 0}}
    serve.start(
        http_options={"host": "127.0.0.1", "port": http_port},
        grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
    )
    settings = AppSettings(
        models=["demo"], store_uri=stack.store_uri, redis_url=stack.redis_url, device="cpu"
    )
    names = ("CliplensIngress", "Encoder", "SaeRunner", "Attributor")
    serve.run(compose(settings, {name: small for name in names}), name="cliplens", route_prefix="/cliplens")
    try:
        yield f"127.0.0.1:{grpc_port}"
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
        classes = ", ".join(class_label(i.label) for i in panel.top.inputs[:8])
        print(f"  latent #{panel.info.latent} [{labels}] top images ({panel.top.source}): {classes}")
    report = out / "report.html"
    report.write_text(render_report(image, label, attributions, decomposition, panels, SAE_ID, class_label))
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
            with serve_app(stack, grpc_port, http_port) as address:
                print(f"serve: gRPC on {address}")
                report = query_and_report(address, out)
        finally:
            ray.shutdown()
    print(f"report: {report.resolve()}")
    print(f"demo done in {time.time() - t0:.0f}s; everything it started has been shut down")
