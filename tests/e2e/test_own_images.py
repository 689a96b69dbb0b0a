"""A user's own images, as the README's "Your own images" path runs them: ``cliplens index`` on a folder
of photos in class sub-folders (a few corrupt), then ``cliplens serve`` as a subprocess on free ports,
called from this process with the client; stopped with SIGINT and SIGTERM, started again on the same
store; and its cache stopped and restarted while it serves."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from serve_process import ServeProcess, stop_if_running

from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.store.local_stack import RedisServer, free_ports
from cliplens.store.sample import SAMPLE_PARQUET
from cliplens_client import Client

REPO = Path(__file__).resolve().parents[2]
SAE_ID = "my-photos"
PHOTOS, CORRUPT = 48, {"cat/broken.jpg": b"not an image at all", "dog/cut.jpg": None}
PROMPTS = ["a photo of a cat.", "a photo of a dog."]


@dataclass(frozen=True)
class Indexed:
    store: Path
    photos: Path
    first_run: str
    second_run: str


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Indexed:
    """48 CIFAR-10 photos in class folders plus two corrupt files, indexed twice (the second run resumes)."""
    root = tmp_path_factory.mktemp("own-images")
    photos = root / "photos"
    rows = pq.read_table(SAMPLE_PARQUET).slice(0, PHOTOS).to_pylist()
    for row in rows:
        folder = photos / CIFAR10_CLASSES[row["label"]]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{row['key']}.jpg").write_bytes(row["jpg"])
    for name, data in CORRUPT.items():
        (photos / name).write_bytes(data if data is not None else rows[0]["jpg"][:120])
    store = root / "store"
    command = [sys.executable, "-m", "cliplens.cli", "index", str(photos), "--model", "demo"]
    command += ["--sae-id", SAE_ID, "--store", str(store), "--epochs", "5", "--device", "cpu"]
    runs = [subprocess.run(command, capture_output=True, text=True, timeout=600) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return Indexed(store, photos, runs[0].stdout, runs[1].stdout)


def test_index_summarises_every_stage_and_resumes(indexed: Indexed) -> None:
    first, second = indexed.first_run, indexed.second_run
    assert f"{PHOTOS + len(CORRUPT)} inputs, {PHOTOS} encoded, 2 skipped as undecodable" in first
    assert "cat/broken" in first and "dog/cut" in first
    assert f"train-sae: {SAE_ID}: topk, d_in 128, d_sae 1024" in first and "latents fire" in first
    assert "`cliplens serve` loads the index into its cache" in first
    assert "(already trained, skipped)" in second and "(already in the store, skipped)" in second


@dataclass(frozen=True)
class Answers:
    """What a user asks a freshly started service: comparable across restarts."""

    attribution: list[tuple[int, float]]
    top: list[tuple[str, float, str]]
    top_source: str
    firing_rate: float
    histogram: list[int]
    label_counts: dict[str, int]
    info_source: str

    @classmethod
    def ask(cls, address: str, photo: Path) -> Answers:
        with Client(address, timeout=120) as client:
            attributions = client.attribute_latents(SAE_ID, photo, PROMPTS, top_n=5)
            latent = attributions[0].latents[0].latent
            top = client.top_activations(SAE_ID, latent, k=8)
            info = client.latent_info(SAE_ID, latent)
        return cls(
            attribution=[(lat.latent, round(lat.attribution, 5)) for lat in attributions[0].latents],
            top=[(i.input_id, round(i.activation, 5), i.label) for i in top.inputs],
            top_source=top.source,
            firing_rate=info.firing_rate,
            histogram=info.counts.tolist(),
            label_counts=info.label_counts,
            info_source=info.source,
        )

    def numbers(self) -> tuple[object, ...]:
        return self.attribution, self.top, self.firing_rate, self.histogram, self.label_counts


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


def check_web_pages(output: str, answers: Answers) -> None:
    """The web address ``cliplens serve`` prints shows the top photos of the user's own latent."""
    (web,) = re.findall(r"web  (http://\S+/ui/)", output)
    latent = answers.attribution[0][0]
    with urllib.request.urlopen(f"{web}sae/{SAE_ID}/latent/{latent}") as response:
        page = response.read().decode()
    assert all(f'alt="{key}"' in page for key, _, _ in answers.top)
    with urllib.request.urlopen(f"{web}images/{answers.top[0][0]}") as response:
        assert response.headers["Content-Type"].startswith("image/") and response.read()


def serve_args(indexed: Indexed, *extra: str) -> tuple[list[str], str]:
    grpc, http, features, attribution = free_ports(4)
    args = ["--store", str(indexed.store), "--grpc-port", str(grpc), "--http-port", str(http)]
    args += ["--feature-port", str(features), "--attribution-port", str(attribution), *extra]
    return args, f"127.0.0.1:{grpc}"


def test_serve_answers_from_its_cache_stops_cleanly_and_restarts_the_same(
    indexed: Indexed, redis: RedisServer
) -> None:
    photo = next((indexed.photos / "cat").glob("test_*.jpg"))
    served: ServeProcess | None = None
    try:
        args, address = serve_args(indexed)
        served = ServeProcess.start(args, cwd=indexed.store.parent)
        assert f"{address.split(':')[1]}  every cliplens service" in served.output
        first = Answers.ask(address, photo)
        check_web_pages(served.output, first)
        assert served.descendants(), "serve started no processes"
        code, left = served.stop(signal.SIGINT)
        assert code == 0 and left == [], served.output[-3000:]
        assert "stopped: Serve, Ray and the embedded cache are shut down" in served.output

        # Again on the same store, this time with the CPU Serve config and a cache of the test's own.
        config = str(REPO / "deploy" / "serve_config.cpu.yaml")
        args, address = serve_args(indexed, "--config", config, "--redis", redis.url)
        served = ServeProcess.start(args, cwd=indexed.store.parent)
        assert f"loaded {SAE_ID} from the store" in served.output
        again = Answers.ask(address, photo)
        redis.stop()
        degraded = Answers.ask(address, photo)
        redis.start()  # empty: the service refills it by itself
        deadline = time.monotonic() + 60
        while (back := Answers.ask(address, photo)).top_source != "redis" and time.monotonic() < deadline:
            time.sleep(0.5)
        code, left = served.stop(signal.SIGTERM)
        assert code == 0 and left == [], served.output[-3000:]
    finally:
        stop_if_running(served)

    assert (first.top_source, first.info_source) == ("redis", "redis")
    assert first.top and first.firing_rate > 0 and sum(first.label_counts.values()) > 0
    assert {label for _, _, label in first.top} <= set(CIFAR10_CLASSES)
    assert all(key.split("/")[0] == label for key, _, label in first.top)
    assert set(first.label_counts) <= set(CIFAR10_CLASSES)
    assert again.numbers() == first.numbers() and again.top_source == "redis"
    assert (degraded.top_source, degraded.info_source) == ("store", "store")
    assert degraded.numbers() == first.numbers()
    assert (back.top_source, back.info_source) == ("redis", "redis") and back.numbers() == first.numbers()
