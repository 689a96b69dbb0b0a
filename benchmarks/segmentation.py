"""Zero-shot segmentation benchmark on synthetic pasted-object canvases (demo model by default).

Each canvas is tiled from downscaled CIFAR-10 images of other classes, with one downscaled target
image pasted at a random place; the heatmap of the target class (patch contributions summed over
layers and heads) is scored by the pointing game and by the IoU of its mean-threshold mask with the
pasted box. Writes ``benchmarks/results/segmentation.{md,json}``.

Images: the first ``--pool`` CIFAR-10 test images, from the shipped 2,000-image sample (the test
split's first 2,000, so the default pool is the same either way) or with ``--data DIR`` from that
CIFAR-10 folder's ``cifar10-test.parquet``; a pool larger than the data is capped, with a message.

Run: ``.venv/bin/python benchmarks/segmentation.py [--data path/to/cifar10 --pool 10000]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from cifar_data import add_data_argument, test_parquet
from cliplens.core.decomposition import evaluate_segmentation, paste_objects
from cliplens.core.models import load_clip
from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.core.zeroshot import text_classifier, zero_shot_accuracy
from cliplens.store.sample import load_labelled_parquet

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--pool", type=int, default=2000, help="CIFAR images to draw targets and tiles from")
    parser.add_argument("--canvases", type=int, default=1000, help="canvases per object size")
    parser.add_argument("--object-sizes", type=int, nargs="+", default=[12, 16, 20])
    parser.add_argument("--seed", type=int, default=0)
    add_data_argument(parser)
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    source = test_parquet(args.data)
    data = load_labelled_parquet(source, limit=args.pool)
    if len(data.labels) < args.pool:
        print(f"segmentation: {source} has {len(data.labels)} images; the pool is those", file=sys.stderr)
    clip = load_clip(args.model, device="auto")
    images = clip.preprocess_images(data.images).cpu()
    classifier = text_classifier(clip, CIFAR10_CLASSES)
    accuracy = zero_shot_accuracy(clip, images, data.labels, classifier)

    rows = []
    for size in args.object_sizes:
        objects = paste_objects(images, data.labels, args.canvases, object_size=size, seed=args.seed)
        start = time.perf_counter()
        scores = evaluate_segmentation(clip.model, objects, classifier)
        seconds = time.perf_counter() - start
        rows.append({"object_size": size, **asdict(scores), "seconds": round(seconds, 2)})
        print(f"object {size}px: {scores} ({seconds:.1f} s)")

    report = {
        "model": args.model,
        "image_size": clip.image_size,
        "device": str(clip.device),
        "data": str(source.relative_to(ROOT) if source.is_relative_to(ROOT) else source),
        "pool_images": len(data.labels),
        "zero_shot_accuracy_on_pool": accuracy,
        "seed": args.seed,
        "command": " ".join([".venv/bin/python benchmarks/segmentation.py", *sys.argv[1:]]),
        "tiles_per_side": 2,
        "results": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "segmentation.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "segmentation.md").write_text(_markdown(report))


def _markdown(report: dict) -> str:
    lines = [
        "# Zero-shot segmentation on pasted-object canvases",
        "",
        f"Model `{report['model']}` ({report['image_size']} px input, {report['device']}); zero-shot accuracy "
        f"{report['zero_shot_accuracy_on_pool']:.3f} on the {report['pool_images']} pool images from "
        f"`{report['data']}`. Each canvas: 2x2 tiles of other-class images plus one target image pasted at a "
        f"random place (seed {report['seed']}). Heatmap: patch terms summed over layers and heads, scored "
        "against the target class embedding minus the mean of the other nine; mask = heatmap > its mean.",
        "",
        "| object px | canvases | pointing accuracy | chance (box area) | ratio | mIoU | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['object_size']} | {r['n_images']} | {r['pointing_accuracy']:.3f} | {r['chance_rate']:.3f} | "
            f"{r['pointing_accuracy'] / r['chance_rate']:.2f}x | {r['mean_iou']:.3f} | {r['seconds']} |"
        )
    lines += [
        "",
        "For reference, a mask covering the whole canvas has IoU equal to the chance rate.",
        "",
        f"Produced by `{report['command']}`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
