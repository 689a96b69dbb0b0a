"""Train the cliplens demo CLIP on the CIFAR-10 train split.

This is a demo model trained by this project on CIFAR-10 (32 px images, 10 classes); it is not an
OpenAI or LAION checkpoint. It exists so that everything in cliplens runs offline. Usage::

    python -m cliplens.demo.train_demo_model --data path/to/cifar10 \
        --out services/cliplens/assets/demo --epochs 5

``--data`` names a CIFAR-10 folder that you supply: ``cifar10-train.parquet`` (the 50,000 train
images) and ``cifar10-test.parquet`` (the 10,000 test images), each with columns ``key`` (string),
``jpg`` (JPEG bytes) and ``label`` (int, the class index in CIFAR-10's order). cliplens ships only a
2,000-image test sample, too little to train on.

The output directory receives the open_clip model config, fp16 safetensors weights and the
training log. Images and texts are contrastively aligned with same-class pairs as positives.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import open_clip
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from cliplens.core.prompts import CIFAR10_CLASSES, PHOTO_TEMPLATES, fill_templates

MODEL_NAME = "cliplens-demo-cifar10"
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "demo"
SPLITS = ("cifar10-train.parquet", "cifar10-test.parquet")


def load_split(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a CIFAR-10 parquet split into uint8 images (N, 3, 32, 32) and int64 labels."""
    table = pq.read_table(path, columns=["jpg", "label"])
    images = np.stack(
        [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in table.column("jpg").to_pylist()]
    )
    labels = torch.tensor(table.column("label").to_numpy(), dtype=torch.int64)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels


def normalise(images_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images_u8.float() / 255.0 - mean) / std


def augment(images_u8: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random 32 px crop from a 4 px reflect-padded image."""
    n = images_u8.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images_u8.flip(-1), images_u8)
    padded = F.pad(images.float(), (4, 4, 4, 4), mode="reflect")
    dx, dy = torch.randint(0, 9, (2,), generator=generator).tolist()
    return padded[:, :, dy : dy + 32, dx : dx + 32]


@torch.no_grad()
def zero_shot_accuracy(
    model: open_clip.CLIP,
    tokenizer: open_clip.tokenizer.SimpleTokenizer,
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> float:
    model.eval()
    class_embs = []
    for name in CIFAR10_CLASSES:
        emb = F.normalize(model.encode_text(tokenizer(fill_templates(name))), dim=-1).mean(0)
        class_embs.append(F.normalize(emb, dim=-1))
    classifier = torch.stack(class_embs)
    correct = 0
    for start in range(0, len(labels), 1000):
        batch = normalise(images_u8[start : start + 1000], mean, std)
        logits = F.normalize(model.encode_image(batch), dim=-1) @ classifier.T
        correct += int((logits.argmax(-1) == labels[start : start + 1000]).sum())
    model.train()
    return correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="DIR",
        help="a CIFAR-10 folder with cifar10-train.parquet and cifar10-test.parquet "
        "(columns key, jpg, label); not shipped with cliplens",
    )
    parser.add_argument("--out", type=Path, default=ASSETS)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    missing = [name for name in SPLITS if not (args.data / name).is_file()]
    if missing:
        parser.error(f"--data {args.data}: no {' or '.join(missing)} there")

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    open_clip.add_model_config(ASSETS / f"{MODEL_NAME}.json")
    model = open_clip.create_model(MODEL_NAME)
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    mean = torch.tensor(model.visual.image_mean or open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.image_std or open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)

    t0 = time.time()
    train_x, train_y = load_split(args.data / SPLITS[0])
    test_x, test_y = load_split(args.data / SPLITS[1])
    print(
        f"decoded {len(train_y)} train and {len(test_y)} test images in {time.time() - t0:.0f}s", flush=True
    )

    prompts = [fill_templates(name) for name in CIFAR10_CLASSES]
    tokens_pc = torch.cat([tokenizer(p) for p in prompts])  # (classes * templates, ctx)
    steps_per_epoch = len(train_y) // args.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.98))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.1
    )
    args.out.mkdir(parents=True, exist_ok=True)
    log: list[dict[str, float]] = []
    model.train()
    for epoch in range(args.epochs):
        order = torch.randperm(len(train_y), generator=generator)
        t_epoch, loss_sum = time.time(), 0.0
        for step in range(steps_per_epoch):
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            labels = train_y[idx]
            images = (augment(train_x[idx], generator) / 255.0 - mean) / std
            template = torch.randint(0, len(PHOTO_TEMPLATES), (len(idx),), generator=generator)
            img = F.normalize(model.encode_image(images), dim=-1)
            # Encode each distinct prompt once, then pick one per image.
            txt_all = F.normalize(model.encode_text(tokens_pc), dim=-1)
            txt = txt_all[labels * len(PHOTO_TEMPLATES) + template]
            logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
            same = (labels[:, None] == labels[None, :]).float()
            targets = same / same.sum(1, keepdim=True)
            loss = 0.5 * (
                torch.sum(-targets * F.log_softmax(logits, 1), 1).mean()
                + torch.sum(-targets * F.log_softmax(logits.T, 1), 1).mean()
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            loss_sum += float(loss)
            if step % 50 == 0:
                print(f"epoch {epoch + 1} step {step}/{steps_per_epoch} loss {float(loss):.4f}", flush=True)
        acc = zero_shot_accuracy(model, tokenizer, test_x, test_y, mean, std)
        entry = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / steps_per_epoch,
            "test_zero_shot_top1": acc,
            "epoch_seconds": time.time() - t_epoch,
        }
        log.append(entry)
        print(json.dumps(entry), flush=True)
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(args.out / f"{MODEL_NAME}.fp16.safetensors"), metadata={"epoch": str(epoch + 1)})
        (args.out / "training_log.json").write_text(
            json.dumps(
                {"model": MODEL_NAME, "args": {k: str(v) for k, v in vars(args).items()}, "epochs": log},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
