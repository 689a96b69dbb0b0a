"""Reproduce the reference SAE table ("SAE for CLIP", methods.md §3) with the cliplens demo model.

ReLU+L1 SAEs at lambda 1e-3, 1e-2, 3e-2 and TopK SAEs at k = 8, 16, 32 (4,096 latents, Adam 1e-3,
batch 256, 5 epochs) trained on the demo model's ``final`` image embeddings of the CIFAR-10 train
split; metrics and zero-shot accuracy (CLIP vs. CLIP with the SAE spliced in) on the test split.

    .venv/bin/python benchmarks/sae_reference.py --data path/to/cifar10

``--data`` is required: a CIFAR-10 folder with cifar10-train.parquet (50,000 images) and
cifar10-test.parquet (10,000), columns key, jpg, label. The table is about SAEs trained on the whole
train split; the shipped 2,000-image sample is too small for 4,096-latent SAEs to mean anything, and
a run on it would overwrite the recorded results.

Writes benchmarks/results/sae_reference.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from cifar_data import TRAIN_FILE, add_data_argument, split_file, test_parquet
from cliplens.core.models import LoadedClip, load_clip
from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.core.sae import ReluConfig, SaeConfig, TopKConfig, build_sae
from cliplens.core.sae.train import TensorBatches, TrainConfig, evaluate_sae, train_sae
from cliplens.core.sites import encode_images
from cliplens.core.zeroshot import SaeEvalRow, embedding_accuracy, format_sae_table, text_classifier
from cliplens.store.sample import load_labelled_parquet

RESULTS = Path(__file__).resolve().parent / "results"


@torch.no_grad()
def embed_split(clip: LoadedClip, parquet: Path, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_labelled_parquet(parquet)
    chunks = [
        encode_images(clip.model, clip.preprocess_images(data.images[i : i + batch_size]))
        .embedding.float()
        .cpu()
        for i in range(0, len(data.images), batch_size)
    ]
    return torch.cat(chunks), data.labels


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_argument(parser, train=True, required=True)
    parser.add_argument("--d-sae", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    clip = load_clip("demo", device="auto")
    train_x, _ = embed_split(clip, split_file(args.data, TRAIN_FILE))
    test_x, test_y = embed_split(clip, test_parquet(args.data))
    print(
        f"embedded {len(train_x)} train and {len(test_x)} test images in {time.time() - t0:.0f}s", flush=True
    )
    classifier = text_classifier(clip, CIFAR10_CLASSES).cpu()
    base = embedding_accuracy(test_x, test_y, classifier)
    common = {
        "d_in": train_x.shape[1],
        "d_sae": args.d_sae,
        "model_id": "demo",
        "dataset_id": "cifar10-train",
    }
    configs: list[tuple[str, SaeConfig]] = [
        *[(f"relu l1={lam:g}", ReluConfig(l1_coeff=lam, **common)) for lam in (1e-3, 1e-2, 3e-2)],
        *[(f"topk k={k}", TopKConfig(k=k, aux_k=256, **common)) for k in (8, 16, 32)],
    ]
    rows = []
    for name, cfg in configs:
        sae = build_sae(cfg)
        train_sae(sae, TensorBatches(train_x, 256), TrainConfig(epochs=args.epochs, lr=1e-3, device="cpu"))
        metrics = evaluate_sae(sae, TensorBatches(test_x, 1000, shuffle=False))
        with torch.no_grad():
            with_sae = embedding_accuracy(sae(test_x), test_y, classifier)
        rows.append(
            SaeEvalRow(name, metrics.l0, metrics.mse, metrics.r2, metrics.dead_fraction, base, with_sae)
        )
        print(format_sae_table(rows[-1:]).splitlines()[-1], flush=True)
    table = format_sae_table(rows)
    header = (
        f"# SAE reference table on the cliplens demo model\n\n"
        f"Demo CLIP (trained by cliplens on CIFAR-10), `final` embeddings (d={train_x.shape[1]}) of the "
        f"{len(train_x)} CIFAR-10 train images; {args.d_sae} latents, Adam 1e-3, batch 256, {args.epochs} epochs; "
        f"metrics and zero-shot accuracy on the {len(test_x)} test images (16-template prompt ensemble).\n"
        f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/sae_reference.py', *sys.argv[1:]])}`.\n\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sae_reference.md").write_text(header + table + "\n")
    (RESULTS / "sae_reference.json").write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    print(table)
    print(f"done in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
