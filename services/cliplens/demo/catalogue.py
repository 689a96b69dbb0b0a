"""A small served catalogue on the demo model, for the serve tests and benchmarks: two SAEs (final site
and a patch site) trained in seconds on 192 sample images, their feature index in the store and Redis,
and an image bucket holding those images."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from cliplens.core.models import LoadedClip
from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.core.sae import ReluConfig, Sae, TopKConfig, build_sae
from cliplens.core.sae.train import TensorBatches, TrainConfig, train_sae
from cliplens.core.sites import encode_images
from cliplens.store import (
    LatentStats,
    LocalStore,
    TopKResult,
    TopKRow,
    fill_cache,
    save_results,
    save_sae_to_store,
)
from cliplens.store.sample import load_labelled_parquet

RUN_ID = "demo-run"
FINAL_SAE = "demo-final-topk"
PATCH_SAE = "demo-resid2-patches"
PATCH_SITE = "resid:2:patches"
N_IMAGES = 192
TOP_K = 16
D_SAE = 256


@dataclass(frozen=True)
class DemoIndex:
    store_dir: Path
    bucket_dir: Path
    keys: list[str]
    jpegs: list[bytes]
    topk: dict[str, list[TopKRow]]
    stats: dict[str, list[LatentStats]]

    @property
    def active_latent(self) -> int:
        """The final SAE's latent with the most top-k entries."""
        latents = [row.latent for row in self.topk[FINAL_SAE]]
        return max(set(latents), key=latents.count)

    def results(self) -> list[TopKResult]:
        return [TopKResult(sae_id, rows, self.stats[sae_id]) for sae_id, rows in self.topk.items()]

    def fill_cache(self, redis_url: str) -> None:
        """Load every SAE's top-k rows and latent statistics into Redis."""
        fill_cache(redis_url, self.results())


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
    names = [CIFAR10_CLASSES[int(label)] for label in sample.labels]
    bucket = LocalStore(root / "bucket")
    for key, data in zip(keys, jpegs, strict=True):
        bucket.put_bytes(key, data)
    with torch.no_grad():
        captured = encode_images(
            clip.model, clip.preprocess_images(sample.images), sites=["final", PATCH_SITE]
        )
    store = LocalStore(root / "store")
    topk: dict[str, list[TopKRow]] = {}
    stats: dict[str, list[LatentStats]] = {}
    final = _train(
        TopKConfig(d_in=128, d_sae=D_SAE, k=8, model_id="demo", site="final", dataset_id=RUN_ID),
        captured["final"],
    )
    patches = captured[PATCH_SITE]
    patch_sae = _train(
        ReluConfig(d_in=128, d_sae=D_SAE, model_id="demo", site=PATCH_SITE, dataset_id=RUN_ID),
        patches.flatten(0, 1),
    )
    for sae_id, sae, rows in ((FINAL_SAE, final, captured["final"]), (PATCH_SAE, patch_sae, patches)):
        save_sae_to_store(store, sae_id, sae, {"l0": 8.0})
        with torch.no_grad():
            z = sae.encode(rows.float())
        z = z.amax(1) if z.ndim == 3 else z
        topk[sae_id] = _topk_rows(z, keys, names)
        stats[sae_id] = _stats(z, names)
    index = DemoIndex(root / "store", root / "bucket", keys, jpegs, topk, stats)
    save_results(store, RUN_ID, index.results())
    index.fill_cache(redis_url)
    return index


def _train(cfg: TopKConfig | ReluConfig, rows: torch.Tensor) -> Sae:
    sae = build_sae(cfg)
    train_sae(
        sae,
        TensorBatches(rows.float(), 64),
        TrainConfig(epochs=2, warmup_steps=5, device="cpu", progress=False),
    )
    return sae.eval()


def _topk_rows(z: torch.Tensor, keys: list[str], labels: list[str]) -> list[TopKRow]:
    values, rows = z.topk(TOP_K, dim=0)
    return [
        TopKRow(latent, rank, keys[int(row)], float(value), labels[int(row)])
        for latent in range(z.shape[1])
        for rank, (value, row) in enumerate(zip(values[:, latent], rows[:, latent], strict=True))
        if value > 0
    ]


def _stats(z: torch.Tensor, labels: list[str]) -> list[LatentStats]:
    """Each latent's firing count, a two-bin histogram of its activations and firing counts by label."""
    fired = z > 0
    stats = []
    for latent in range(z.shape[1]):
        values = z[fired[:, latent], latent]
        top = float(values.max()) if len(values) else 0.0
        low = int((values < top / 2).sum())
        by_label: dict[str, int] = {}
        for row in fired[:, latent].nonzero().flatten().tolist():
            by_label[labels[row]] = by_label.get(labels[row], 0) + 1
        edges, counts = ([0.0, top / 2, top], [low, len(values) - low]) if len(values) else ([], [])
        stats.append(LatentStats(len(values), z.shape[0], edges, counts, by_label))
    return stats
