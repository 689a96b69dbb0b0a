"""AttributeLatents latency through gRPC versus the raw forward + backward pass of the same model.

Served: sequential AttributeLatents calls (one JPEG, one text, the demo final-site SAE, top 10) on
both gRPC paths, in alternating rounds: the Serve ingress (port 9000: proxy -> ingress -> Attributor)
and the Attributor's direct port (``attribution_port``). ListModels through port 9000 gives the floor
of the two Serve hops. Raw: ``encode_image`` of the preprocessed image, cosine with the text embedding,
``backward()`` to the input (weights frozen, as in serving), at the driver's default torch threads.
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

from cliplens.core.models import LoadedClip, load_clip
from cliplens.demo.catalogue import FINAL_SAE
from cliplens.store import decode_image
from cliplens_client import Client
from serve_common import APP, percentile, serve_app, summary_ms, synchronize, write_results

SMALL = {"ray_actor_options": {"num_cpus": 0.1, "num_gpus": 0}}
TEXT = "a photo of a cat"
NOTE = (
    "Note: at the final site the served backward pass stops at the SAE splice (the embedding is linear in"
    " the latents), while the raw baseline back-propagates through the whole image tower to the pixels."
)


def raw_forward_backward(jpeg: bytes, runs: int, clip: LoadedClip | None = None) -> list[float]:
    """Seconds of each of ``runs`` passes (after 5 warm-ups) of ``clip``, by default the demo on CPU."""
    clip = clip or load_clip("demo", device="cpu")
    pixels = clip.preprocess_images([decode_image(jpeg)]).requires_grad_(True)  # type: ignore[list-item]
    with torch.no_grad():
        text = F.normalize(clip.encode_texts([TEXT]).float(), dim=-1)
    times = []
    for _ in range(runs + 5):
        start = time.perf_counter()
        pixels.grad = None
        score = (F.normalize(clip.model.encode_image(pixels).float(), dim=-1) @ text.T).sum()
        score.backward()
        synchronize(clip.device)
        times.append(time.perf_counter() - start)
    return times[5:]


def served_latencies(address: str, jpeg: bytes, runs: int, sae_id: str = FINAL_SAE) -> list[float]:
    times = []
    with Client(address, app=APP) as client:
        for _ in range(5):
            client.attribute_latents(sae_id, jpeg, [TEXT])
        for _ in range(runs):
            start = time.perf_counter()
            client.attribute_latents(sae_id, jpeg, [TEXT])
            times.append(time.perf_counter() - start)
    return times


def hop_floor(address: str, runs: int) -> list[float]:
    """ListModels through port 9000: answered by the ingress from memory, so only the Serve hops."""
    times = []
    with Client(address, app=APP) as client:
        for _ in range(runs):
            start = time.perf_counter()
            client.list_models()
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="calls per path")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds the calls are split into")
    args = parser.parse_args()
    options = {name: SMALL for name in ("CliplensIngress", "Encoder", "SaeRunner")}
    options["Attributor"] = {"ray_actor_options": {"num_cpus": 1, "num_gpus": 0}}
    per_round = max(1, args.runs // args.rounds)
    with serve_app(["demo"], options) as running:
        jpeg = running.index.jpegs[0]
        raw = raw_forward_backward(jpeg, args.runs)
        paths: dict[str, list[float]] = {"ingress": [], "direct": []}
        for _ in range(args.rounds):
            paths["ingress"] += served_latencies(running.address, jpeg, per_round)
            paths["direct"] += served_latencies(running.attribution_address, jpeg, per_round)
        floor = hop_floor(running.address, args.runs)
    raw_p50 = percentile(raw, 50)
    ratios = {path: percentile(times, 50) / raw_p50 for path, times in paths.items()}
    load = os.getloadavg()
    payload: dict[str, Any] = {
        "served_ingress_9000": summary_ms(paths["ingress"]),
        "served_direct_port": summary_ms(paths["direct"]),
        "list_models_9000": summary_ms(floor),
        "raw_forward_backward": summary_ms(raw),
        "ratio_p50_ingress_9000": ratios["ingress"],
        "ratio_p50_direct_port": ratios["direct"],
        "torch_threads_raw": torch.get_num_threads(),
    }

    def row(name: str, key: str) -> str:
        stats = payload[key]
        return f"| {name} | {stats['p50_ms']:.2f} | {stats['p99_ms']:.2f} | {stats['mean_ms']:.2f} |"

    def verdict(ratio: float) -> str:
        return f"**{ratio:.2f}** ({'met' if ratio <= 1.5 else 'NOT met'})"

    lines = [
        "# AttributeLatents p50 through gRPC vs raw forward + backward (goal: ratio <= 1.5)",
        "",
        "Demo model (32 px, 7.6M parameters), one JPEG, one text, final-site TopK SAE (256 latents), top 10; "
        f"Attributor replica with 1 CPU; raw pass in the driver with {torch.get_num_threads()} torch threads. "
        "Machine: 2 shared CPU cores, no GPU; load average at the end "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min).",
        "",
        "| path | p50 ms | p99 ms | mean ms |",
        "|---|---|---|---|",
        row("AttributeLatents, Attributor's direct port (`attribution_port`)", "served_direct_port"),
        row("AttributeLatents, Serve ingress (port 9000)", "served_ingress_9000"),
        row("ListModels, port 9000 (the two Serve hops alone)", "list_models_9000"),
        row("raw forward + backward", "raw_forward_backward"),
        "",
        f"Ratio of p50s: direct port {verdict(ratios['direct'])}; port 9000 {verdict(ratios['ingress'])}.",
        "",
        "Port 9000 adds the Serve gRPC proxy -> ingress -> Attributor actor hops to the same work; "
        "the ListModels row shows what the first two cost alone on this machine.",
        "",
        NOTE,
        "",
        "Run: `.venv/bin/python benchmarks/serve_attribution.py`",
    ]
    write_results("serve_attribution", payload, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
