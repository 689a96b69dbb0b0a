"""AttributeLatents latency through gRPC versus the raw forward + backward pass of the same model.

Served: sequential AttributeLatents calls (one JPEG, one text, the demo final-site SAE, top 10).
Raw: ``encode_image`` of the preprocessed image, cosine with the text embedding, ``backward()`` to the
input (weights frozen, as in serving: no weight gradients are computed on either side).
Goal: p50 served / p50 raw <= 1.5. Writes ``benchmarks/results/serve_attribution.{md,json}``.

Run: ``.venv/bin/python benchmarks/serve_attribution.py``
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import torch
import torch.nn.functional as F

from cliplens.core.models import load_clip
from cliplens.store import decode_image
from cliplens_client import Client
from serve_common import APP, percentile, serve_app, summary_ms, write_results

SMALL = {"ray_actor_options": {"num_cpus": 0.1, "num_gpus": 0}}
TEXT = "a photo of a cat"
NOTE = (
    "Note: at the final site the served backward pass stops at the SAE splice (the embedding is linear in"
    " the latents), while the raw baseline back-propagates through the whole image tower to the pixels."
)


def raw_forward_backward(jpeg: bytes, runs: int) -> list[float]:
    clip = load_clip("demo", device="cpu")
    clip.model.requires_grad_(False)
    pixels = clip.preprocess_images([decode_image(jpeg)]).requires_grad_(True)  # type: ignore[list-item]
    with torch.no_grad():
        text = F.normalize(clip.encode_texts([TEXT]).float(), dim=-1)
    times = []
    for _ in range(runs + 5):
        start = time.perf_counter()
        pixels.grad = None
        score = (F.normalize(clip.model.encode_image(pixels).float(), dim=-1) @ text.T).sum()
        score.backward()
        times.append(time.perf_counter() - start)
    return times[5:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    options = {name: SMALL for name in ("CliplensIngress", "Encoder", "SaeRunner")}
    options["Attributor"] = {"ray_actor_options": {"num_cpus": 2, "num_gpus": 0}}
    with serve_app(["demo"], options) as running:
        jpeg = running.index.jpegs[0]
        raw = raw_forward_backward(jpeg, args.runs)
        served = []
        with Client(running.address, app=APP) as client:
            for _ in range(5):
                client.attribute_latents("demo-final-topk", jpeg, [TEXT])
            for _ in range(args.runs):
                start = time.perf_counter()
                client.attribute_latents("demo-final-topk", jpeg, [TEXT])
                served.append(time.perf_counter() - start)
    ratio = percentile(served, 50) / percentile(raw, 50)
    load = os.getloadavg()
    payload: dict[str, Any] = {
        "served": summary_ms(served),
        "raw_forward_backward": summary_ms(raw),
        "ratio_p50": ratio,
    }
    lines = [
        "# AttributeLatents p50 through gRPC vs raw forward + backward (goal: ratio <= 1.5)",
        "",
        "Demo model (32 px, 7.6M parameters), one JPEG, one text, final-site TopK SAE (256 latents), top 10; "
        "Attributor replica with 2 CPUs. Machine: 2 shared CPU cores, no GPU; load average at the end "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min).",
        "",
        "| path | p50 ms | p99 ms | mean ms |",
        "|---|---|---|---|",
        f"| AttributeLatents via gRPC | {payload['served']['p50_ms']:.2f} | {payload['served']['p99_ms']:.2f} | {payload['served']['mean_ms']:.2f} |",
        f"| raw forward + backward | {payload['raw_forward_backward']['p50_ms']:.2f} | {payload['raw_forward_backward']['p99_ms']:.2f} | {payload['raw_forward_backward']['mean_ms']:.2f} |",
        "",
        f"Ratio of p50s: **{ratio:.2f}** ({'met' if ratio <= 1.5 else 'NOT met'}).",
        "",
        NOTE,
        "",
        "Run: `.venv/bin/python benchmarks/serve_attribution.py`",
    ]
    write_results("serve_attribution", payload, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
