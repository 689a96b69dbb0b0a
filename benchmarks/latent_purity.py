"""Class purity of SAE latents' top-16 images: trained SAEs versus random ones, demo model, CIFAR-10.

For each SAE, over CIFAR-10 test images' `final` embeddings: every latent with at least 16 positive
activations contributes the share of its 16 top images that carry its commonest label; purity is the
mean over those latents. A random SAE is the same architecture and size with its initial (random)
weights. Each (architecture, size) is run with several seeds; trained SAEs use Adam with warm-up and
cosine decay on the same embeddings. The sweep over dictionary sizes shows where the margin over
random comes from: the demo model's embeddings sit in about ten class clusters (the top 10 principal
components hold most of the variance), so a random direction's extremes are mostly one class, while
a dictionary much larger than that also models within-class variation, whose extremes are mixed.
Two references frame the numbers: the 16 nearest neighbours of each image (how pure the
representation is locally) and the class-mean directions (a supervised ceiling).
Writes ``benchmarks/results/latent_purity.{md,json}``.

Images: the shipped 2,000-image sample of the CIFAR-10 test split, or with ``--data DIR`` the full
test split of that CIFAR-10 folder (10,000 images, as in the recorded results). ``--images`` defaults
to all of them; asking for more than the data holds uses what it holds, with a message (repeating
images would put copies into a latent's top 16 and inflate its purity).

Run: ``.venv/bin/python benchmarks/latent_purity.py [--data path/to/cifar10]``
"""

from __future__ import annotations

import argparse
import io
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from cifar_data import add_data_argument, first_rows, test_parquet
from cliplens.core.models import load_clip
from cliplens.core.sae import ReluConfig, SaeConfig, TopKConfig, build_sae
from cliplens.core.sae.train import TensorBatches, TrainConfig, train_sae
from cliplens.core.sites import encode_images
from serve_common import write_results

TOP = 16
ARCHITECTURES: dict[str, Callable[[int, int], SaeConfig]] = {
    "relu l1=1e-2": lambda d, n: ReluConfig(d_in=d, d_sae=n, l1_coeff=1e-2),
    "topk k=1": lambda d, n: TopKConfig(d_in=d, d_sae=n, k=1),
    "topk k=8, AuxK": lambda d, n: TopKConfig(d_in=d, d_sae=n, k=8, aux_k=min(64, n // 2)),
}


def embeddings(source: Path, count: int | None) -> tuple[torch.Tensor, np.ndarray]:
    """The demo model's `final` embeddings of ``source``'s first ``count`` images (all: None), and labels."""
    table = pq.read_table(source)
    table = first_rows(table, table.num_rows if count is None else count, source, what="latent_purity")
    clip = load_clip("demo", device="cpu")
    jpegs = table.column("jpg").to_pylist()
    parts = []
    with torch.no_grad():
        for start in range(0, len(jpegs), 256):
            images = [Image.open(io.BytesIO(data)).convert("RGB") for data in jpegs[start : start + 256]]
            parts.append(
                encode_images(clip.model, clip.preprocess_images(images), ["final"])["final"].float()
            )
    return torch.cat(parts), np.asarray(table.column("label").to_pylist())


def share_of_commonest(labels: np.ndarray) -> float:
    return Counter(labels.tolist()).most_common(1)[0][1] / len(labels)


def purity(z: torch.Tensor, labels: np.ndarray) -> tuple[float, int]:
    """Mean top-16 class purity over latents with 16 positive activations, and their count."""
    values, rows = z.topk(TOP, dim=0)
    shares = [
        share_of_commonest(labels[rows[:, j].numpy()])
        for j in range(z.shape[1])
        if bool((values[:, j] > 0).all())
    ]
    return (float(np.mean(shares)) if shares else float("nan")), len(shares)


def references(x: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    """Neighbour purity, the class-mean directions' purity and the top-10 principal components' share."""
    unit = torch.nn.functional.normalize(x, dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-2.0)
    neighbours = similarity.topk(TOP, dim=1).indices.numpy()
    centred = x - x.mean(0)
    means = torch.stack([centred[torch.from_numpy(labels == c)].mean(0) for c in np.unique(labels)])
    singular = torch.linalg.svdvals(centred)
    return {
        "neighbours": float(np.mean([share_of_commonest(labels[row]) for row in neighbours])),
        "class_means": purity(centred @ means.T, labels)[0],
        "top10_variance": float((singular[:10] ** 2).sum() / (singular**2).sum()),
    }


def run_seed(cfg: SaeConfig, x: torch.Tensor, labels: np.ndarray, seed: int, epochs: int) -> dict[str, float]:
    torch.manual_seed(seed)
    sae = build_sae(cfg)
    with torch.no_grad():
        random_purity, random_latents = purity(sae.encode(x), labels)
    train = TrainConfig(epochs=epochs, warmup_steps=20, progress=False, device="cpu", seed=seed, dead_after_rows=5000)  # fmt: skip
    history = train_sae(sae, TensorBatches(x, 128), train)
    with torch.no_grad():
        trained_purity, trained_latents = purity(sae.encode(x), labels)
    return {"seed": seed, "random": random_purity, "random_latents": random_latents,
            "trained": trained_purity, "trained_latents": trained_latents, "r2": history[-1].metrics.r2}  # fmt: skip


def spread(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, help="test images to use (default: all of the data's)")
    add_data_argument(parser)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 128, 512], help="d_sae values")
    args = parser.parse_args()
    torch.set_num_threads(2)
    x, labels = embeddings(test_parquet(args.data), args.images)
    images = len(labels)
    reference = references(x, labels)
    rows = []
    for size in args.sizes:
        for name, config in ARCHITECTURES.items():
            seeds = [run_seed(config(x.shape[1], size), x, labels, s, args.epochs) for s in range(args.seeds)]
            rows.append({"sae": name, "d_sae": size, "seeds": seeds})
            print(rows[-1], flush=True)
    lines = [
        "# Top-16 class purity of SAE latents: trained vs random (demo model, `final`, CIFAR-10 test)",
        "",
        f"{images} images; a latent counts when it has {TOP} positive activations; purity = mean share "
        f"of its top {TOP} images in its commonest class (chance for 10 balanced classes is about 0.2). "
        f"Trained: {args.epochs} epochs, Adam, batch 128. Each row: mean (min-max) over {args.seeds} seeds; "
        "the margin is the mean of trained minus random, seed by seed.",
        "",
        f"References: an image's {TOP} nearest neighbours (cosine) share its commonest class at "
        f"{reference['neighbours']:.3f}; the top {TOP} images along the 10 class-mean directions at "
        f"{reference['class_means']:.3f} (a supervised ceiling); the top 10 principal components hold "
        f"{reference['top10_variance']:.1%} of the variance of these 128-d embeddings.",
        "",
        "| SAE | d_sae | random purity | trained purity | margin | latents counted (random / trained) | trained R² |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['sae']} | {r['d_sae']} | {spread([s['random'] for s in r['seeds']])} | "
            f"{spread([s['trained'] for s in r['seeds']])} | "
            f"{np.mean([s['trained'] - s['random'] for s in r['seeds']]):+.3f} | "
            f"{np.mean([s['random_latents'] for s in r['seeds']]):.0f} / "
            f"{np.mean([s['trained_latents'] for s in r['seeds']]):.0f} | "
            f"{np.mean([s['r2'] for s in r['seeds']]):.3f} |"
            for r in rows
        ),
        "",
        f"Run: `{' '.join(['.venv/bin/python', 'benchmarks/latent_purity.py', *sys.argv[1:]])}`",
    ]
    payload = {"rows": rows, "images": images, "references": reference}
    write_results("latent_purity", payload, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
