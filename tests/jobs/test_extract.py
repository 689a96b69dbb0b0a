"""``cliplens extract`` on a real local Ray: S3 vs local, equality to a plain forward, corrupt inputs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from job_helpers import cifar_subset, reference_activations
from PIL import Image

from cliplens.cli import main
from cliplens.core.models import LoadedClip
from cliplens.store import ActivationRun, LocalStore, S3Config, open_store
from image_bytes import png_claiming

SITES = ("final", "resid:3:patches")


def s3_env(monkeypatch: pytest.MonkeyPatch, config: S3Config) -> None:
    monkeypatch.setenv("CLIPLENS_S3_ENDPOINT", f"http://{config.endpoint}")
    monkeypatch.setenv("CLIPLENS_S3_ACCESS_KEY", config.access_key or "")
    monkeypatch.setenv("CLIPLENS_S3_SECRET_KEY", config.secret_key or "")


def extract(inputs: Path | str, store: str, *extra: str) -> int:
    sites = [flag for site in SITES for flag in ("--site", site)]
    return main(
        [
            "extract",
            str(inputs),
            "--store",
            store,
            "--rows-per-shard",
            "64",
            "--batch-size",
            "32",
            *sites,
            *extra,
        ]
    )


def test_s3_and_local_runs_are_identical_and_match_a_plain_forward(
    ray_session: None,
    demo_clip: LoadedClip,
    cifar_sample: Path,
    s3_config: S3Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3_env(monkeypatch, s3_config)
    parquet = cifar_subset(cifar_sample, tmp_path, 300)
    assert extract(parquet, str(tmp_path / "local"), "--dataset-id", "cifar300") == 0
    assert extract(parquet, "s3://extract-test/store", "--dataset-id", "cifar300") == 0
    out = capsys.readouterr().out
    assert "rows encoded: 300" in out and "rows/s after" in out
    local, s3 = LocalStore(tmp_path / "local"), open_store("s3://extract-test/store")
    for site in SITES:
        run_ids = {key.split("/")[1] for key in local.list("runs/") if key.endswith("manifest.json")}
        runs = [ActivationRun(local, r) for r in run_ids]
        (run,) = [r for r in runs if r.manifest.spec["site"] == site]
        twin = ActivationRun(s3, run.run_id)
        assert run.keys() == twin.keys()
        assert torch.equal(run.load_all(), twin.load_all())
        keys, expected = reference_activations(demo_clip, parquet, site)
        assert run.keys() == keys and run.num_rows == 300
        torch.testing.assert_close(run.load_all().float(), expected, atol=2e-2, rtol=1e-2)
        assert run.manifest.spec["job"]["batch_size"] == 32


def corrupt_folder(directory: Path, cifar_sample: Path) -> dict[str, str]:
    """Good and bad images in ``directory``; returns bad key -> a word its skip reason must contain."""
    directory.mkdir()
    images = pq.read_table(cifar_sample).slice(0, 6).column("jpg").to_pylist()
    for i, data in enumerate(images):
        (directory / f"good{i}.jpg").write_bytes(data)
    rgb = Image.open(io.BytesIO(images[0])).convert("RGB")
    cmyk = io.BytesIO()
    rgb.convert("CMYK").save(cmyk, "JPEG")
    (directory / "cmyk.jpg").write_bytes(cmyk.getvalue())
    deep = io.BytesIO()
    Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).save(deep, "PNG")
    (directory / "deep16.png").write_bytes(deep.getvalue())
    (directory / "truncated.jpg").write_bytes(images[1][: len(images[1]) // 2])
    (directory / "empty.jpg").write_bytes(b"")
    (directory / "text.jpg").write_text("this is not an image\n")
    (directory / "huge.png").write_bytes(png_claiming(100_000, 100_000))
    return {"truncated": "truncated", "empty": "zero bytes", "text": "not an image", "huge": "too large"}


def test_corrupt_images_are_skipped_with_reasons(
    ray_session: None, cifar_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = corrupt_folder(tmp_path / "images", cifar_sample)
    assert (
        main(
            ["extract", str(tmp_path / "images"), "--store", str(tmp_path / "store"), "--rows-per-shard", "4"]
        )
        == 0
    )
    store = LocalStore(tmp_path / "store")
    (manifest_key,) = [k for k in store.list("runs/") if k.endswith("manifest.json")]
    run = ActivationRun(store, manifest_key.split("/")[1])
    assert sorted(run.keys()) == sorted([f"good{i}" for i in range(6)] + ["cmyk", "deep16"])
    assert sorted(run.manifest.skipped) == sorted(bad)
    for key, word in bad.items():
        assert word in run.manifest.skipped[key].lower(), (key, run.manifest.skipped[key])
    assert torch.isfinite(run.load_all().float()).all()
    assert "inputs skipped as undecodable: 4" in capsys.readouterr().out
