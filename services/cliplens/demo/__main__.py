"""``cliplens demo`` / ``make demo``: the offline quickstart on the demo model and the shipped sample.

Loads the demo CLIP (trained by this project on CIFAR-10), prints its zero-shot accuracy on the
shipped CIFAR-10 sample, trains a TopK SAE on the sample's image embeddings and prints the SAE
table (metrics and zero-shot accuracy with the SAE spliced in).
"""

from __future__ import annotations

import argparse
import time

import torch

from cliplens.core.models import load_clip
from cliplens.core.sae import TopKConfig, build_sae
from cliplens.core.sae.train import TensorBatches, TrainConfig, evaluate_sae, train_sae
from cliplens.core.sites import encode_images
from cliplens.core.zeroshot import SaeEvalRow, format_sae_table, text_classifier, zero_shot_accuracy
from cliplens.demo.sample import class_names, load_labelled_parquet

HELP = "run the offline quickstart on the demo model and the shipped CIFAR-10 sample"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="demo", help="model id (default: demo)")
    parser.add_argument("--limit", type=int, default=2000, help="images of the sample to use")
    parser.add_argument("--epochs", type=int, default=20, help="SAE training epochs")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def run(args: argparse.Namespace) -> int:
    t0 = time.time()
    clip = load_clip(args.model, device=args.device)
    print(f"model: {clip.spec.id} ({clip.spec.arch}) on {clip.device}; {clip.spec.description}")
    sample = load_labelled_parquet(limit=args.limit)
    images = clip.preprocess_images(sample.images)
    classifier = text_classifier(clip, class_names())
    accuracy = zero_shot_accuracy(clip, images, sample.labels, classifier)
    print(f"zero-shot top-1 on {len(sample.labels)} CIFAR-10 test images: {accuracy:.4f}")

    with torch.no_grad():
        embeddings = encode_images(clip.model, images).embedding.float().cpu()
    sae = build_sae(
        TopKConfig(
            d_in=embeddings.shape[1],
            d_sae=8 * embeddings.shape[1],
            k=16,
            aux_k=64,
            model_id=clip.spec.id,
            site="final",
            dataset_id="cifar10-test-sample",
        )
    )
    train_sae(
        sae, TensorBatches(embeddings, 128), TrainConfig(epochs=args.epochs, warmup_steps=20, device="cpu")
    )
    metrics = evaluate_sae(sae, TensorBatches(embeddings, 512, shuffle=False))
    with_sae = zero_shot_accuracy(clip, images, sample.labels, classifier, sae=sae.to(clip.device))
    row = SaeEvalRow(
        "topk k=16 x8", metrics.l0, metrics.mse, metrics.r2, metrics.dead_fraction, accuracy, with_sae
    )
    print()
    print(format_sae_table([row]))
    print(f"\ndone in {time.time() - t0:.0f}s")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="cliplens demo", description=HELP)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
