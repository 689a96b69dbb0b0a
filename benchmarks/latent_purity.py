"""Class purity of SAE latents' top-16 images: trained SAEs versus random ones, demo model, CIFAR-10.

For each SAE, over the 10,000 CIFAR-10 test images' `final` embeddings: every latent with at least 16
positive activations contributes the share of its 16 top images that carry its commonest label;
purity is the mean over those latents (how many there are is reported beside it). A random SAE is
the same architecture and size with its initial (random) weights. The trained SAEs use Adam with
warm-up and cosine decay on the same embeddings. Writes ``benchmarks/results/latent_purity.{md,json}``.

Run: ``.venv/bin/python benchmarks/latent_purity.py``
"""

from __future__ import annotations

import argparse
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from cliplens.core.models import load_clip
from cliplens.core.sae import ReluConfig, SaeConfig, TopKConfig, build_sae
from cliplens.core.sae.train import TensorBatches, TrainConfig, train_sae
from cliplens.core.sites import encode_images
from serve_common import write_results

CIFAR10_TEST = Path("/work/shared/data/cifar10/cifar10-test.parquet")
TOP = 16


def embeddings(count: int) -> tuple[torch.Tensor, np.ndarray]:
    """The demo model's `final` embeddings of the first ``count`` test images, and their labels."""
    table = pq.read_table(CIFAR10_TEST).slice(0, count)
    clip = load_clip("demo", device="cpu")
    jpegs = table.column("jpg").to_pylist()
    parts = []
    with torch.no_grad():
        for start in range(0, count, 256):
            images = [Image.open(io.BytesIO(data)).convert("RGB") for data in jpegs[start : start + 256]]
            parts.append(
                encode_images(clip.model, clip.preprocess_images(images), ["final"])["final"].float()
            )
    return torch.cat(parts), np.asarray(table.column("label").to_pylist())


def purity(z: torch.Tensor, labels: np.ndarray) -> tuple[float, int]:
    """Mean top-16 class purity over latents with 16 positive activations, and their count."""
    values, rows = z.topk(TOP, dim=0)
    shares = [
        Counter(labels[rows[:, j].numpy()].tolist()).most_common(1)[0][1] / TOP
        for j in range(z.shape[1])
        if bool((values[:, j] > 0).all())
    ]
    return (float(np.mean(shares)) if shares else float("nan")), len(shares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(2)
    x, labels = embeddings(args.images)
    d = x.shape[1]
    configs: list[tuple[str, SaeConfig]] = [
        ("topk k=1, 512", TopKConfig(d_in=d, d_sae=512, k=1)),
        ("topk k=4, 512, AuxK", TopKConfig(d_in=d, d_sae=512, k=4, aux_k=64)),
        ("topk k=8, 512, AuxK", TopKConfig(d_in=d, d_sae=512, k=8, aux_k=64)),
        ("relu l1=3e-2, 512", ReluConfig(d_in=d, d_sae=512, l1_coeff=3e-2)),
    ]
    rows = []
    for name, cfg in configs:
        torch.manual_seed(0)
        sae = build_sae(cfg)
        with torch.no_grad():
            random_purity, random_latents = purity(sae.encode(x), labels)
        train = TrainConfig(
            epochs=args.epochs, warmup_steps=20, progress=False, device="cpu", dead_after_rows=5000
        )
        history = train_sae(sae, TensorBatches(x, 128), train)
        with torch.no_grad():
            trained_purity, trained_latents = purity(sae.encode(x), labels)
        rows.append({"sae": name, "random": random_purity, "random_latents": random_latents,
                     "trained": trained_purity, "trained_latents": trained_latents,
                     "r2": history[-1].metrics.r2})  # fmt: skip
        print(rows[-1], flush=True)
    lines = [
        "# Top-16 class purity of SAE latents: trained vs random (demo model, `final`, CIFAR-10 test)",
        "",
        f"{args.images} images; a latent counts when it has {TOP} positive activations; purity = mean share "
        f"of its top {TOP} images in its commonest class (chance for 10 balanced classes is about 0.2). "
        f"Trained: {args.epochs} epochs, Adam, batch 128.",
        "",
        "| SAE | random purity | random latents counted | trained purity | trained latents counted | trained R² |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['sae']} | {r['random']:.3f} | {r['random_latents']} | {r['trained']:.3f} | "
            f"{r['trained_latents']} | {r['r2']:.3f} |"
            for r in rows
        ),
        "",
        "Run: `.venv/bin/python benchmarks/latent_purity.py`",
    ]
    write_results("latent_purity", {"rows": rows, "images": args.images}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
