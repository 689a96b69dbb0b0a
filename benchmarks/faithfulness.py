"""Faithfulness benchmark: deletion and insertion curves of latent attribution and its baselines.

Trains a TopK SAE on the demo model's activations at one site (``final`` by default) of CIFAR-10
training images, then draws deletion and insertion curves on held-out test images, each scored
against its true class's zero-shot text embedding. Writes ``benchmarks/results/faithfulness.{md,json,png}``
(for other sites ``faithfulness-resid-L.*``).

Images: with ``--data DIR`` (a CIFAR-10 folder, as in the recorded results) the first ``--train``
images of its train split and the first ``--test`` of its test split; without it the shipped
2,000-image sample, split in two: its first images train the SAE (``--train`` of them at most, so
that ``--test`` are left), the ``--test`` images after them are the test images.

Run: ``.venv/bin/python benchmarks/faithfulness.py [--data path/to/cifar10] [--site resid:3 --test 300]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib
import torch

from cifar_data import TRAIN_FILE, add_data_argument, split_file, test_parquet
from cliplens.core.faithfulness import FaithfulnessReport, faithfulness_curves, faithfulness_table
from cliplens.core.models import LoadedClip, load_clip
from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.core.sae import TopKConfig, build_sae
from cliplens.core.sae.train import TensorBatches, TrainConfig, evaluate_sae, train_sae
from cliplens.core.sites import Site, encode_images
from cliplens.core.zeroshot import text_classifier, zero_shot_accuracy
from cliplens.store.sample import SAMPLE_PARQUET, LabelledImages, load_labelled_parquet

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PANELS = (
    ("deletion_scores", "deletion: normalised score ↓"),
    ("deletion_correct", "deletion: zero-shot accuracy ↓"),
    ("insertion_scores", "insertion: normalised score ↑"),
    ("insertion_correct", "insertion: zero-shot accuracy ↑"),
)


def load_splits(data: Path | None, n_train: int, n_test: int) -> tuple[LabelledImages, LabelledImages, str]:
    """Train and test images: ``data``'s CIFAR-10 splits, else the shipped sample split in two."""
    if data is not None:
        train_file, test_file = split_file(data, TRAIN_FILE), test_parquet(data)
        return load_labelled_parquet(train_file, n_train), load_labelled_parquet(test_file, n_test), str(data)
    sample = load_labelled_parquet(SAMPLE_PARQUET)
    if n_test >= len(sample.keys):
        sys.exit(f"--test {n_test}: the sample has {len(sample.keys)} images; pass --data for more")
    n_train = min(n_train, len(sample.keys) - n_test)

    def part(rows: slice) -> LabelledImages:
        return LabelledImages(sample.keys[rows], sample.images[rows], sample.labels[rows])

    return part(slice(0, n_train)), part(slice(n_train, n_train + n_test)), str(SAMPLE_PARQUET)


@torch.no_grad()
def activations(clip: LoadedClip, data: LabelledImages, site: str, batch_size: int = 256) -> torch.Tensor:
    """The activations of ``data`` at ``site`` (rows; patch sites are flattened over patches)."""
    images = clip.preprocess_images(data.images)
    parts = [
        encode_images(clip.model, images[i : i + batch_size], sites=[site])[site].float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(parts).flatten(0, -2)


def plot(report: FaithfulnessReport, path: Path, title: str) -> None:
    steps = report.steps.tolist()
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), sharex=True)
    for ax, (key, label) in zip(axes.flat, PANELS, strict=True):
        for i, (method, curves) in enumerate(report.curves.items()):
            values = getattr(curves, key)
            curve = report.normalized(values) if values.is_floating_point() else values.float().mean(0)
            # Later methods are drawn thinner, so that identical curves stay visible.
            ax.plot(steps, curve.tolist(), marker=".", linewidth=3.5 - 0.5 * i, label=method)
        ax.set_title(label)
        ax.set_xlabel("latents deleted / inserted")
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--site", default="final", help="SAE site: final, resid:L or resid:L:patches")
    parser.add_argument("--train", type=int, default=5000, help="training images for the SAE")
    parser.add_argument("--test", type=int, default=1000, help="held-out images for the curves")
    parser.add_argument("--d-sae", type=int, default=1024)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    add_data_argument(parser, train=True)
    args = parser.parse_args()

    start = time.perf_counter()
    clip = load_clip(args.model, device=args.device)
    train, test, source = load_splits(args.data, args.train, args.test)
    site = Site.parse(args.site)
    torch.manual_seed(args.seed)
    rows = activations(clip, train, str(site))
    sae = build_sae(
        TopKConfig(
            d_in=site.width(clip.model.visual),
            d_sae=args.d_sae,
            k=args.k,
            aux_k=64,
            site=str(site),
            model_id=args.model,
        )
    )
    train_sae(
        sae,
        TensorBatches(rows, 256, seed=args.seed),
        TrainConfig(epochs=args.epochs, warmup_steps=20, seed=args.seed, device=args.device, progress=False),
    )
    metrics = evaluate_sae(sae, TensorBatches(activations(clip, test, str(site)), 512, shuffle=False))
    classifier = text_classifier(clip, CIFAR10_CLASSES)
    images = clip.preprocess_images(test.images)
    accuracy = zero_shot_accuracy(clip, images, test.labels, classifier)
    accuracy_sae = zero_shot_accuracy(clip, images, test.labels, classifier, sae=sae)
    curves_start = time.perf_counter()
    report = faithfulness_curves(clip, sae, images, test.labels, classifier, seed=args.seed)
    curves_seconds = time.perf_counter() - curves_start

    setup = {
        "model": args.model,
        "data": source,
        "train_images": len(train.keys),
        "test_images": len(test.keys),
        "sae": f"topk d_sae={args.d_sae} k={args.k} aux_k=64 at {site}, {args.epochs} epochs",
        "sae_test_metrics": metrics.as_dict(),
        "zero_shot_accuracy": accuracy,
        "zero_shot_accuracy_with_sae": accuracy_sae,
        "curves_seconds": round(curves_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    stem = "faithfulness" if site.kind == "final" else f"faithfulness-{str(site).replace(':', '-')}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({**setup, **report.as_dict()}, indent=2))
    title = f"{args.model}: TopK SAE (k={args.k}) at {site}, {len(test.keys)} test images"
    plot(report, RESULTS / f"{stem}.png", title)
    table = faithfulness_table(report)
    (RESULTS / f"{stem}.md").write_text(
        f"# Faithfulness of latent rankings ({title})\n\n"
        f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/faithfulness.py', *sys.argv[1:]])}` (data: {source}; "
        f"{len(train.keys)} training images for the SAE).\n\n"
        f"SAE on test activations: L0 {metrics.l0:.1f}, R² {metrics.r2:.4f}, dead {metrics.dead_fraction:.3f}; "
        f"zero-shot accuracy {accuracy:.4f} (CLIP) / {accuracy_sae:.4f} (CLIP+SAE).\n\n"
        "Each image is scored against its true class's text embedding; latents are ranked by each "
        "method's score for that text. Deletion zeroes the top n latents, insertion keeps only them; the "
        "SAE error term is off (pure reconstruction). Areas use x = n / n_max; score curves are "
        "normalised so that the decoder bias alone is 0 and the full reconstruction 1 (insertion can "
        "exceed 1 when only positive contributors are kept).\n\n"
        f"{table}\n\n"
        "At the `final` site with the embedding norm frozen, attribution is z_k <d_k, t> / ||e|| and "
        "act x logit lens is z_k cos(d_k, t); with unit-norm decoder rows they differ by a positive "
        "per-image factor, so both rank latents identically there (not at residual sites).\n"
    )
    print(table)
    print(json.dumps(setup, indent=2))


if __name__ == "__main__":
    main()
