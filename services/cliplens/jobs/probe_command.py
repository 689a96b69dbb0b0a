"""``cliplens probe``: run the failure-mode probes (typography, polysemy and compound nouns, spurious
correlation) on a model and labelled images, and print the Markdown report."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

from cliplens.core.models import LoadedClip, load_clip
from cliplens.core.naming import DEFAULT_VOCABULARY, VOCABULARY_FILES, embed_vocabulary, load_vocabulary
from cliplens.core.probes import format_report, run_probes
from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.core.sae import Sae, TopKConfig, build_sae, load_sae
from cliplens.core.sae.train import TensorBatches, TrainConfig, train_sae
from cliplens.core.sites import encode_images
from cliplens.store.readers import read_class_names
from cliplens.store.sample import SAMPLE_PARQUET, load_labelled_parquet

HELP = "probe a model for failure modes (typography, polysemy, compound nouns, spurious backgrounds)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="demo", help="model id (default: demo)")
    parser.add_argument(
        "--data",
        default=str(SAMPLE_PARQUET),
        help="parquet with key, jpg, label (default: the shipped sample)",
    )
    parser.add_argument(
        "--classes", help="class names, one per line, in label order (default: the CIFAR-10 names)"
    )
    parser.add_argument("--limit", type=int, default=500, help="images of the data to use (default: 500)")
    parser.add_argument(
        "--sae", help="SAE checkpoint directory; without it a TopK SAE is trained on the images' embeddings"
    )
    parser.add_argument("--sae-epochs", type=int, default=10, help="epochs of that SAE (default: 10)")
    parser.add_argument(
        "--vocabulary",
        default=DEFAULT_VOCABULARY,
        help=f"labels that name latents: {', '.join([DEFAULT_VOCABULARY, *VOCABULARY_FILES])} or a file, one per line",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--out", help="also write the Markdown report to this file")


def run(args: argparse.Namespace) -> int:
    clip = load_clip(args.model, device=args.device)
    data = load_labelled_parquet(args.data, limit=args.limit)
    names = read_class_names(args.classes) if args.classes else CIFAR10_CLASSES
    sae = (
        load_sae(args.sae, device=clip.device).sae
        if args.sae
        else _train_final_sae(clip, clip.preprocess_images(data.images), args.sae_epochs)
    )
    vocabulary = embed_vocabulary(
        clip,
        _read_lines(args.vocabulary) if Path(args.vocabulary).is_file() else load_vocabulary(args.vocabulary),
    )
    report = format_report(run_probes(clip, sae, data.images, data.labels, names, vocabulary))
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


def _read_lines(path: str) -> list[str]:
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def _train_final_sae(clip: LoadedClip, pixels: Tensor, epochs: int) -> Sae:
    """A TopK SAE (8x expansion, k=16) trained on the image embeddings of ``pixels``."""
    with torch.no_grad():
        embeddings = torch.cat(
            [
                encode_images(clip.model, pixels[i : i + 256]).embedding.float().cpu()
                for i in range(0, len(pixels), 256)
            ]
        )
    d_in = embeddings.shape[1]
    sae = build_sae(
        TopKConfig(d_in=d_in, d_sae=8 * d_in, k=16, aux_k=64, model_id=clip.spec.id, site="final"), seed=0
    )
    train_sae(
        sae,
        TensorBatches(embeddings, 128),
        TrainConfig(epochs=epochs, warmup_steps=20, device="cpu", progress=False),
    )
    return sae.to(clip.device)
