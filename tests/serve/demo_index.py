"""A small served catalogue built on the demo model: two SAEs, their top-k index and an image bucket."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from cliplens.core.models import LoadedClip
from cliplens.core.sae import ReluConfig, Sae, TopKConfig, build_sae
from cliplens.core.sae.train import TensorBatches, TrainConfig, train_sae
from cliplens.core.sites import encode_images
from cliplens.demo.sample import load_labelled_parquet
from cliplens.store import LatentStats, LocalStore, TopKCache, TopKRow, save_sae_to_store, write_topk_results

RUN_ID = "demo-run"
FINAL_SAE = "demo-final-topk"
PATCH_SAE = "demo-resid2-patches"
PATCH_SITE = "resid:2:patches"
N_IMAGES = 192
TOP_K = 16


@dataclass(frozen=True)
class DemoIndex:
    store_dir: Path
    bucket_dir: Path
    keys: list[str]
    jpegs: list[bytes]
    d_sae: int


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def build_demo_index(clip: LoadedClip, root: Path, redis_url: str) -> DemoIndex:
    """Train the SAEs on demo activations, store them with their top-k parquet and fill Redis."""
    torch.manual_seed(0)
    sample = load_labelled_parquet(limit=N_IMAGES)
    keys = [f"cifar10-test/{key}" for key in sample.keys]
    jpegs = [jpeg(image) for image in sample.images]
    names = [str(int(label)) for label in sample.labels]
    bucket = LocalStore(root / "bucket")
    for key, data in zip(keys, jpegs, strict=True):
        bucket.put_bytes(key, data)
    with torch.no_grad():
        captured = encode_images(clip.model, clip.preprocess_images(sample.images), sites=["final", PATCH_SITE])
    store = LocalStore(root / "store")
    cache = TopKCache(redis_url, k=TOP_K)
    final = _train(TopKConfig(d_in=128, d_sae=256, k=8, model_id="demo", site="final", dataset_id=RUN_ID), captured["final"])
    patches = captured[PATCH_SITE]
    patch_sae = _train(
        ReluConfig(d_in=128, d_sae=256, model_id="demo", site=PATCH_SITE, dataset_id=RUN_ID), patches.flatten(0, 1)
    )
    for sae_id, sae, rows in ((FINAL_SAE, final, captured["final"]), (PATCH_SAE, patch_sae, patches)):
        save_sae_to_store(store, sae_id, sae, {"l0": 8.0})
        with torch.no_grad():
            z = sae.encode(rows.float())
        z = z.amax(1) if z.ndim == 3 else z
        topk = _topk_rows(z, keys, names)
        write_topk_results(store, RUN_ID, sae_id, topk)
        cache.rebuild(sae_id, topk, sae.cfg.d_sae)
        for latent in range(sae.cfg.d_sae):
            fires = int((z[:, latent] > 0).sum())
            cache.set_stats(sae_id, latent, LatentStats(fires, N_IMAGES, [0.0, 1.0, 2.0], [fires, 0]))
    return DemoIndex(root / "store", root / "bucket", keys, jpegs, 256)


def _train(cfg: TopKConfig | ReluConfig, rows: torch.Tensor) -> Sae:
    sae = build_sae(cfg)
    train_sae(sae, TensorBatches(rows.float(), 64), TrainConfig(epochs=2, warmup_steps=5, device="cpu", progress=False))
    return sae.eval()


def _topk_rows(z: torch.Tensor, keys: list[str], labels: list[str]) -> list[TopKRow]:
    values, rows = z.topk(TOP_K, dim=0)
    return [
        TopKRow(latent, rank, keys[int(row)], float(value), labels[int(row)])
        for latent in range(z.shape[1])
        for rank, (value, row) in enumerate(zip(values[:, latent], rows[:, latent], strict=True))
        if value > 0
    ]
