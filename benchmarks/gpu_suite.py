"""GPU suite: extraction, encoder serving, attribution and SAE training on the accelerator found here.

Every figure is a ratio against the raw in-process model in the same run, on the same images:

- extraction: ``run_extract`` (the ``cliplens extract`` pipeline: Ray Data decode tasks, one encoder
  actor, fp16 shards into a local-directory store; sites ``final`` and the SAE's site from one
  forward pass) in fp32 and fp16 (fp16 on a GPU only), against ``encode_image`` alone on images
  preprocessed onto the device beforehand, and against a decode + preprocess + encode loop
  (``serve_encoder.in_process``);
- encoder serving: EmbedImages over gRPC (``serve_encoder.served``, the app of ``serve_common``)
  against the same two baselines in fp32;
- attribution: AttributeLatents p50 over gRPC (Serve's port and the Attributor's direct port), with the
  SAE trained below, against a raw forward + backward pass to the pixels
  (``serve_attribution.raw_forward_backward``);
- SAE training tokens/s: one TopK SAE (``train_sae_on_run``) and a sweep of several
  (``train_sweep_on_run``) streaming from the stored run, against ``train_sae`` + ``evaluate_sae`` of
  the first SAE on the same activations held in memory.

The figures use one device (the first GPU, else the CPU). Images: the shipped CIFAR-10 sample's JPEGs,
repeated under new keys to the count asked for. Writes ``benchmarks/results/gpu.{md,json}`` on a GPU,
``gpu-cpu.{md,json}`` on CPU, or ``--out``.

Run: ``.venv/bin/python benchmarks/gpu_suite.py`` (``--tiny``: the demo model and a few dozen images)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import open_clip
import pyarrow.parquet as pq
import ray
import torch

from cifar_data import test_parquet, tiled_rows
from cliplens.core.models import LoadedClip, ModelRegistry, load_clip, resolve_device
from cliplens.core.sae import build_sae
from cliplens.core.sae.train import TensorBatches, TrainConfig, evaluate_sae, train_sae
from cliplens.jobs.extract import ExtractConfig, run_extract
from cliplens.jobs.sae_sweep import train_sweep_on_run
from cliplens.jobs.sae_training import SaeJob, sae_config, train_sae_on_run
from cliplens.serve.local_app import local_options
from cliplens.serve.request_checks import decode_rgb
from cliplens.store import DEFAULT_MAX_PIXELS, ActivationRun, LocalStore
from serve_attribution import raw_forward_backward, served_latencies
from serve_common import RESULTS, ROOT, Stack, demo_stack, summary_ms, synchronize, write_results
from serve_encoder import in_process, served

T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    """What the suite runs; each field is a flag (``--sae-site``...)."""

    model: str
    images: int
    batch: int
    sae_site: str
    expansion: int
    ks: tuple[int, ...]
    sae_epochs: int
    sae_batch: int
    clients: int
    images_per_call: int
    attribution_calls: int


HELP = {
    "model": "registry id or open_clip architecture (random weights)",
    "images": "images per measurement",
    "batch": "model batch (raw forward, loop, extraction, served Encoder)",
    "sae_site": "the SAEs' site, extracted beside final",
    "expansion": "SAE latents = expansion x the site's width",
    "ks": "TopK k of the SAEs: the single SAE takes the first, the sweep trains one per k",
    "sae_epochs": "epochs of each SAE",
    "sae_batch": "SAE training batch (tokens)",
    "clients": "concurrent EmbedImages callers",
    "images_per_call": "JPEGs per EmbedImages call",
    "attribution_calls": "AttributeLatents calls per path (and raw passes)",
}
GPU_SIZES = Sizes("ViT-B-32", 2048, 256, "resid:8:patches", 16, (16, 32, 64, 128), 2, 4096, 64, 64, 200)
TINY_SIZES = Sizes("demo", 48, 16, "resid:2:patches", 2, (8, 16), 1, 256, 4, 8, 20)


@dataclass(frozen=True)
class Baseline:
    """The raw in-process model in one dtype."""

    dtype: str
    forward_images_per_s: float  # encode_image alone, inputs already on the device
    loop_images_per_s: float  # decode + preprocess + encode in one loop


def timed(work: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def raw_forward(clip: LoadedClip, jpegs: list[bytes], batch: int) -> float:
    """Images/s of ``encode_image`` alone on the images, preprocessed onto the device beforehand."""
    images = [decode_rgb("image", data, DEFAULT_MAX_PIXELS) for data in jpegs]
    batches = [clip.preprocess_images(images[i : i + batch]) for i in range(0, len(images), batch)]
    with torch.inference_mode():
        clip.model.encode_image(batches[0])
        synchronize(clip.device)
        start = time.perf_counter()
        for pixels in batches:
            clip.model.encode_image(pixels)
        synchronize(clip.device)
        return len(images) / (time.perf_counter() - start)


def measure_extraction(
    sizes: Sizes, dtype: str, device: torch.device, inputs: Path, jpegs: list[bytes], store: LocalStore
) -> tuple[Baseline, dict[str, Any]]:
    """The baselines in ``dtype``, then ``run_extract`` of the same images."""
    forward = raw_forward(load_clip(sizes.model, device=device, dtype=dtype), jpegs, sizes.batch)
    loop = in_process(
        sizes.model, jpegs, sizes.batch, batched_normalise=True, device=str(device), dtype=dtype
    )
    config = ExtractConfig(
        inputs=str(inputs),
        model=sizes.model,
        sites=("final", sizes.sae_site),
        rows_per_shard=sizes.batch,
        batch_size=sizes.batch,
        decode_batch_size=sizes.batch,
        dtype=dtype,
    )
    summary = run_extract(config, store)
    return Baseline(dtype, forward, loop), {
        "dtype": dtype,
        "runs": summary.runs,
        "steady_images_per_s": summary.steady_rows_per_s,
        "overall_images_per_s": summary.rows_per_s,
        "startup_s": summary.startup_seconds,
        "steady_vs_forward": summary.steady_rows_per_s / forward,
        "overall_vs_forward": summary.rows_per_s / forward,
        "steady_vs_loop": summary.steady_rows_per_s / loop,
    }


def sae_jobs(sizes: Sizes, run: ActivationRun, name: str) -> list[SaeJob]:
    """One TopK SAE per k of ``sizes.ks``, named ``<name>-k<k>``."""
    train = TrainConfig(epochs=sizes.sae_epochs, progress=False)
    d_sae = sizes.expansion * run.row_shape[-1]
    return [
        SaeJob(run.run_id, f"{name}-k{k}", "topk", d_sae, {"k": k}, train, batch_size=sizes.sae_batch)
        for k in sizes.ks
    ]


def in_memory_training(job: SaeJob, run: ActivationRun) -> float:
    """Seconds of ``train_sae`` + ``evaluate_sae`` of ``job``'s SAE on the run's rows held in memory."""
    rows = run.load_all().flatten(0, -2)
    sae = build_sae(sae_config(run, job), seed=job.train.seed)
    source = TensorBatches(rows, job.batch_size, seed=job.train.seed)
    return timed(lambda: (train_sae(sae, source, job.train), evaluate_sae(sae, source)))[1]


def measure_sae_training(sizes: Sizes, store: LocalStore, run_id: str) -> dict[str, Any]:
    """Tokens/s (vectors x epochs, summed over the SAEs) of one SAE, the sweep and the in-memory loop."""
    run = ActivationRun(store, run_id)
    single, sweep = sae_jobs(sizes, run, "gpu-suite")[0], sae_jobs(sizes, run, "gpu-suite-sweep")
    tokens = run.num_rows * math.prod(run.row_shape[:-1]) * sizes.sae_epochs
    _, single_s = timed(lambda: train_sae_on_run(store, single))
    _, sweep_s = timed(lambda: train_sweep_on_run(store, sweep))
    memory_s = in_memory_training(single, run)
    rows = {
        "in_memory": {"saes": 1, "tokens": tokens, "seconds": memory_s},
        "single": {"saes": 1, "tokens": tokens, "seconds": single_s},
        "sweep": {"saes": len(sweep), "tokens": tokens * len(sweep), "seconds": sweep_s},
    }
    for row in rows.values():
        row["tokens_per_s"] = row["tokens"] / row["seconds"]
        row["vs_in_memory"] = row["tokens_per_s"] / rows["in_memory"]["tokens_per_s"]
    per_epoch = tokens // sizes.sae_epochs
    return {"sae_id": single.sae_id, "d_sae": single.d_sae, "tokens_per_epoch": per_epoch, **rows}


def measure_serving(
    sizes: Sizes, device: torch.device, stack: Stack, jpegs: list[bytes], sae_id: str, fp32: Baseline
) -> dict[str, Any]:
    """EmbedImages images/s and AttributeLatents latencies through the app started on ``stack`` (fp32),
    then the raw forward + backward while it idles."""
    options = local_options(1.0 if device.type == "cuda" else 0.0)
    options["Encoder"]["max_ongoing_requests"] = 4 * sizes.batch
    running = stack.start(options)
    grpc_rate = asyncio.run(served(running.address, sizes.model, jpegs, sizes.clients, sizes.images_per_call))
    paths = {
        name: served_latencies(address, jpegs[0], sizes.attribution_calls, sae_id)
        for name, address in (("port_9000", running.address), ("direct_port", running.attribution_address))
    }
    clip = load_clip(sizes.model, device=device)
    raw = summary_ms(raw_forward_backward(jpegs[0], sizes.attribution_calls, clip))
    attribution = {name: summary_ms(times) for name, times in paths.items()}
    return {
        "encoder": {
            "grpc_images_per_s": grpc_rate,
            "vs_forward": grpc_rate / fp32.forward_images_per_s,
            "vs_loop": grpc_rate / fp32.loop_images_per_s,
        },
        "attribution": {
            "raw_forward_backward": raw,
            **{
                name: {**stats, "p50_vs_raw": stats["p50_ms"] / raw["p50_ms"]}
                for name, stats in attribution.items()
            },
        },
    }


def model_description(model: str) -> str:
    registry = ModelRegistry.default()
    return registry.get(model).description if model in registry else "open_clip architecture, random weights"


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def environment(device: torch.device) -> dict[str, Any]:
    cpu = cpu_name()
    gpus = [
        f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
        for props in map(torch.cuda.get_device_properties, range(torch.cuda.device_count()))
    ]
    return {
        "device": gpus[0] if device.type == "cuda" else f"CPU ({cpu})",
        "gpus": gpus,
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "open_clip": open_clip.__version__,
        "ray": ray.__version__,
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
    }


def markdown(result: dict[str, Any]) -> str:
    env, sizes, on_gpu = result["environment"], result["sizes"], bool(result["environment"]["gpus"])
    ext, serving, sae = result["extraction"], result["serving"], result["sae_training"]
    baselines = {b["dtype"]: b for b in result["baselines"]}
    attribution = serving["attribution"]
    lines = [
        f"# GPU suite: {env['device']}",
        "",
        "Every ratio is against the raw in-process model in the same run, on the same images: "
        "**forward** = `encode_image` alone on images preprocessed onto the device beforehand; **loop** = "
        "one loop that decodes, preprocesses and encodes them (`serve_encoder.in_process`, batched "
        "normalisation). One device: the first GPU, else the CPU.",
        "",
        "| | |",
        "|---|---|",
        f"| device | {env['device']} |",
        f"| GPUs found | {', '.join(env['gpus']) or 'none'} |",
        f"| CPU | {env['cpu']}, {env['cpus']} cores; load average at the end "
        f"{' / '.join(f'{load:.2f}' for load in env['load_average'])} (1 / 5 / 15 min) |",
        f"| torch / its CUDA build / cuDNN | {env['torch']} / {env['cuda'] or '-'} / {env['cudnn'] or '-'} |",
        f"| open_clip / Ray / Python | {env['open_clip']} / {env['ray']} / {env['python']} |",
        f"| model | {sizes['model']}: {result['model_description']} |",
        f"| images | {sizes['images']} CIFAR-10 JPEGs, 32 px (the shipped sample, repeated under new keys) |",
        f"| sizes | {', '.join(f'{name} {value}' for name, value in sizes.items())} |",
        "",
        f"Run: `{result['command']}`",
        "",
        "## Baselines: the raw in-process model",
        "",
        "| dtype | forward images/s | loop images/s |",
        "|---|---|---|",
        *(
            f"| {d} | {b['forward_images_per_s']:.1f} | {b['loop_images_per_s']:.1f} |"
            for d, b in baselines.items()
        ),
        "",
        "## Extraction: `run_extract` (the `cliplens extract` pipeline)",
        "",
        f"Ray Data decode tasks, one encoder actor, sites `final` and `{sizes['sae_site']}` from one "
        "forward pass, fp16 shards of one batch each into a local-directory store. Steady = rows after the "
        "first encoded batch reached the driver; overall = from the pipeline's start (worker and actor "
        "start-up included).",
        "",
        "| dtype | steady images/s | overall images/s | start-up s | steady / forward | overall / forward | steady / loop |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['dtype']} | {r['steady_images_per_s']:.1f} | {r['overall_images_per_s']:.1f} | "
            f"{r['startup_s']:.1f} | **{r['steady_vs_forward']:.2f}** | {r['overall_vs_forward']:.2f} | "
            f"{r['steady_vs_loop']:.2f} |"
            for r in ext
        ),
        *([] if on_gpu else ["| fp16 | not measured: fp16 runs on a GPU only | | | | | |"]),
        "",
        "## Encoder serving: EmbedImages over gRPC (fp32)",
        "",
        f"The served app (`serve_common.demo_stack`, one-machine deployment options), {sizes['clients']} "
        f"concurrent clients, {sizes['images_per_call']} JPEGs per call, Encoder batch {sizes['batch']}.",
        "",
        "| gRPC images/s | / forward | / loop |",
        "|---|---|---|",
        f"| {serving['encoder']['grpc_images_per_s']:.1f} | **{serving['encoder']['vs_forward']:.2f}** | "
        f"{serving['encoder']['vs_loop']:.2f} |",
        "",
        "## AttributeLatents p50 over gRPC (fp32)",
        "",
        f"One JPEG, one text, top 10, SAE `{sae['sae_id']}` (at `{sizes['sae_site']}`, trained below), "
        f"{sizes['attribution_calls']} sequential calls per path. Raw: forward + backward to the pixels in "
        "process (the served backward stops at the SAE's site).",
        "",
        "| path | p50 ms | p99 ms | p50 / raw p50 |",
        "|---|---|---|---|",
        *(
            f"| {name} | {attribution[key]['p50_ms']:.2f} | {attribution[key]['p99_ms']:.2f} | "
            f"**{attribution[key]['p50_vs_raw']:.2f}** |"
            for name, key in (
                ("Attributor's direct port", "direct_port"),
                ("Serve's port (9000)", "port_9000"),
            )
        ),
        f"| raw forward + backward | {attribution['raw_forward_backward']['p50_ms']:.2f} | "
        f"{attribution['raw_forward_backward']['p99_ms']:.2f} | 1.00 |",
        "",
        "## SAE training: tokens/s",
        "",
        f"TopK SAEs with {sae['d_sae']} latents on the fp32 run of `{sizes['sae_site']}` "
        f"({sae['tokens_per_epoch']} tokens), {sizes['sae_epochs']} epoch(s), batch {sizes['sae_batch']}, "
        f"k = {', '.join(map(str, sizes['ks']))} (the single SAE: k = {sizes['ks'][0]}). Tokens = vectors x "
        "epochs, summed over the SAEs; seconds = the whole call (training, the evaluation pass, saving). The "
        "sweep's SAEs share one read of the run, so its ratio can pass 1.",
        "",
        "| training | SAEs | tokens | seconds | tokens/s | / in-memory |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {sae[key]['saes']} | {sae[key]['tokens']} | {sae[key]['seconds']:.2f} | "
            f"{sae[key]['tokens_per_s']:,.0f} | **{sae[key]['vs_in_memory']:.2f}** |"
            for name, key in (
                ("`train_sae_on_run` (streamed from the store)", "single"),
                ("`train_sweep_on_run`", "sweep"),
                ("`train_sae` + `evaluate_sae` in memory", "in_memory"),
            )
        ),
    ]
    return "\n".join(lines) + "\n"


def parse_args() -> tuple[Sizes, Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="preset: the demo model, 48 images (CPU, seconds)"
    )
    parser.add_argument("--out", type=Path, help="the .md to write (.json beside it)")
    for field in fields(Sizes):
        default = getattr(GPU_SIZES, field.name)
        many = isinstance(default, tuple)
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=int if many else type(default),
            nargs="+" if many else None,
            help=f"{HELP[field.name]} (default {default}; --tiny: {getattr(TINY_SIZES, field.name)})",
        )
    args = parser.parse_args()
    given = {f.name: getattr(args, f.name) for f in fields(Sizes) if getattr(args, f.name) is not None}
    given = {name: tuple(value) if isinstance(value, list) else value for name, value in given.items()}
    sizes = replace(TINY_SIZES if args.tiny else GPU_SIZES, **given)
    out = args.out or RESULTS / ("gpu.md" if torch.cuda.is_available() else "gpu-cpu.md")
    return sizes, out


def main() -> None:
    sizes, out = parse_args()
    device = resolve_device("auto")
    dtypes = ("fp32", "fp16") if device.type == "cuda" else ("fp32",)
    script = Path(__file__).resolve().relative_to(ROOT)
    command = shlex.join([".venv/bin/python", str(script), *sys.argv[1:]])
    with tempfile.TemporaryDirectory(prefix="cliplens-gpu-suite-") as tmp:
        inputs, store = Path(tmp) / "inputs.parquet", LocalStore(Path(tmp) / "store")
        table = tiled_rows(pq.read_table(test_parquet(None)), sizes.images)
        pq.write_table(table, inputs)
        jpegs = table.column("jpg").to_pylist()
        batching = {"max_batch_size": sizes.batch, "batch_wait_timeout_s": 0.01}
        cpus = max(4, os.cpu_count() or 1)
        with demo_stack([sizes.model], store.root, cpus, encoder_batch=batching) as stack:
            measured = [measure_extraction(sizes, dtype, device, inputs, jpegs, store) for dtype in dtypes]
            baselines = [baseline for baseline, _ in measured]
            sae = measure_sae_training(sizes, store, measured[0][1]["runs"][sizes.sae_site])
            serving = measure_serving(sizes, device, stack, jpegs, sae["sae_id"], baselines[0])
    result = {
        "environment": environment(device),
        "sizes": asdict(sizes),
        "command": command,
        "model_description": model_description(sizes.model),
        "baselines": [asdict(b) for b in baselines],
        "extraction": [row for _, row in measured],
        "serving": serving,
        "sae_training": sae,
    }
    write_results(out.stem, result, markdown(result), out.parent)


if __name__ == "__main__":
    main()
