"""``cliplens eval``: zero-shot accuracy with and without an SAE, and the faithfulness curves.

With ``--data`` the images are read, decoded and encoded (any site); without it the SAE's own run
is used, which needs a ``final``-site SAE (zero-shot from the stored embeddings; faithfulness needs
images and is left out).
"""

from __future__ import annotations

import argparse
from itertools import islice

import torch
from torch import Tensor

from cliplens.core.errors import InvalidInputError
from cliplens.core.faithfulness import faithfulness_curves, faithfulness_table
from cliplens.core.models import LoadedClip, load_clip
from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.core.sae import Sae
from cliplens.core.sae.train import TensorBatches, evaluate_sae
from cliplens.core.sites import Site, encode_images
from cliplens.core.zeroshot import (
    SaeEvalRow,
    embedding_accuracy,
    format_sae_table,
    text_classifier,
    zero_shot_accuracy,
)
from cliplens.store.decoding import Skipped, decode_image
from cliplens.store.objects import open_store
from cliplens.store.readers import FORMATS, read_class_names, read_inputs
from cliplens.store.run_reader import ActivationRun
from cliplens.store.saes import load_sae_from_store

HELP = "zero-shot accuracy with/without an SAE and its faithfulness curves, over a dataset or its run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="store URI (default: $CLIPLENS_STORE or the local store)")
    parser.add_argument("--sae", required=True, help="SAE id in the store's catalog")
    parser.add_argument(
        "--data", help="labelled images (parquet, WebDataset, folder); default: the SAE's run"
    )
    parser.add_argument("--format", dest="input_format", choices=FORMATS, help="format of --data")
    parser.add_argument("--limit", type=int, default=1000, help="images of --data to use (default: 1000)")
    parser.add_argument("--classes", help="class names, one per line, in label order (default: CIFAR-10)")
    parser.add_argument("--model", help="model id (default: the SAE's model)")
    parser.add_argument(
        "--faithfulness-images", type=int, default=64, help="images for the faithfulness curves (0 = skip)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def run(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    sae = load_sae_from_store(store, args.sae).sae
    names = read_class_names(args.classes) if args.classes else list(CIFAR10_CLASSES)
    clip = load_clip(args.model or sae.cfg.model_id, device=args.device)
    sae = sae.to(clip.device)
    classifier = text_classifier(clip, names)
    if args.data:
        images, labels = _read_images(clip, args.data, args.input_format, args.limit, names)
        accuracy = zero_shot_accuracy(clip, images, labels, classifier)
        accuracy_sae = zero_shot_accuracy(clip, images, labels, classifier, sae)
        metrics = evaluate_sae(sae, TensorBatches(_site_rows(clip, sae, images), 256, shuffle=False))
        source = args.data
    else:
        run_ = ActivationRun(store, sae.cfg.dataset_id)
        if Site.parse(sae.cfg.site).kind != "final":
            raise InvalidInputError(
                f"SAE '{args.sae}' sits at site '{sae.cfg.site}': zero-shot needs the images, give --data"
            )
        embeddings = run_.load_all().float().to(clip.device)
        labels = torch.tensor([_label_index(label, names) for label in run_.labels()])
        accuracy = embedding_accuracy(embeddings, labels, classifier)
        accuracy_sae = embedding_accuracy(sae(embeddings), labels, classifier)
        metrics = evaluate_sae(sae, TensorBatches(embeddings, 256, shuffle=False))
        source = f"run {run_.run_id}"
    row = SaeEvalRow(
        args.sae, metrics.l0, metrics.mse, metrics.r2, metrics.dead_fraction, accuracy, accuracy_sae
    )
    print(f"## Zero-shot over {source} ({int(labels.shape[0])} images, {len(names)} classes)\n")
    print(format_sae_table([row]))
    if args.data and args.faithfulness_images > 0:
        n = min(args.faithfulness_images, int(labels.shape[0]))
        report = faithfulness_curves(clip, sae, images[:n], labels[:n], classifier)
        print(f"\n## Faithfulness ({n} images)\n")
        print(faithfulness_table(report))
    return 0


def _label_index(label: str | None, names: list[str]) -> int:
    """A class index from a stored label: a number in range or one of the class names."""
    if label is not None and label.isdigit() and int(label) < len(names):
        return int(label)
    if label in names:
        return names.index(label)
    raise InvalidInputError(f"label '{label}' is neither a class index below {len(names)} nor a class name")


def _read_images(
    clip: LoadedClip, uri: str, fmt: str | None, limit: int, names: list[str]
) -> tuple[Tensor, Tensor]:
    pixels, labels = [], []
    for record in islice(read_inputs(uri, fmt), limit):
        image = decode_image(record.data)
        if isinstance(image, Skipped):
            continue
        pixels.append(clip.preprocess(image))
        labels.append(_label_index(record.label, names))
    if not pixels:
        raise InvalidInputError(f"no decodable labelled images in {uri}")
    return torch.stack(pixels).to(clip.device, clip.dtype), torch.tensor(labels)


@torch.no_grad()
def _site_rows(clip: LoadedClip, sae: Sae, images: Tensor) -> Tensor:
    """The SAE's site activations of ``images``, flattened to ``(vectors, d_in)``."""
    site = str(Site.parse(sae.cfg.site))
    parts = [encode_images(clip.model, images[i : i + 256], [site])[site] for i in range(0, len(images), 256)]
    return torch.cat(parts).float().reshape(-1, sae.cfg.d_in)
