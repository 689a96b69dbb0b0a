"""Input readers (parquet, WebDataset, folders; local and S3) and robust image decoding."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.prompts import CIFAR10_CLASSES, CIFAR10_CLASSES_FILE
from cliplens.store import (
    Record,
    S3Config,
    Skipped,
    decode_image,
    read_class_names,
    read_inputs,
)
from fixtures_servers import s3_store
from image_bytes import png_claiming
from input_files import write_tar


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def gradient(size: tuple[int, int] = (40, 30)) -> Image.Image:
    x = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :].repeat(size[1], 0)
    return Image.fromarray(np.stack([x, 255 - x, np.full_like(x, 90)], -1), "RGB")


def test_decoding_corpus() -> None:
    good_jpeg = encode(gradient(), "JPEG", quality=95)
    big_jpeg = encode(gradient((400, 300)), "JPEG", quality=95)
    skips = {
        "truncated jpeg": (big_jpeg[: len(big_jpeg) // 2], "truncated or corrupt"),
        "jpeg cut inside its header": (good_jpeg[:100], "unreadable image header"),
        "zero bytes": (b"", "empty input"),
        "text named .jpg": (b"this is not an image\n", "not an image"),
        "header claims 100000x100000": (png_claiming(100_000, 100_000), "image too large"),
    }
    for name, (data, reason) in skips.items():
        result = decode_image(data)
        assert isinstance(result, Skipped) and reason in result.reason, name

    rgb = decode_image(good_jpeg)
    assert isinstance(rgb, Image.Image) and rgb.mode == "RGB" and rgb.size == (40, 30)
    assert np.abs(np.asarray(rgb, np.int16) - np.asarray(gradient(), np.int16)).mean() < 3


def test_cmyk_jpeg_becomes_the_same_colour_in_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    result = decode_image(encode(cmyk, "JPEG", quality=100))
    assert isinstance(result, Image.Image) and result.mode == "RGB"
    r, g, b = np.asarray(result).reshape(-1, 3).mean(0)
    assert r > 240 and g < 15 and b < 15


def test_sixteen_bit_png_scales_to_eight_bits() -> None:
    levels = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(levels), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    result = decode_image(data)
    assert isinstance(result, Image.Image) and result.mode == "RGB"
    assert np.asarray(result)[0, :, 0].tolist() == [0, 64, 128, 255]


def test_grayscale_palette_and_transparent_images_become_rgb() -> None:
    gray = decode_image(encode(Image.new("L", (4, 4), 77), "PNG"))
    palette = decode_image(encode(gradient().convert("P"), "PNG"))
    clear = decode_image(encode(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG"))
    half = decode_image(encode(Image.new("RGBA", (4, 4), (0, 0, 0, 128)), "PNG"))
    assert isinstance(gray, Image.Image) and np.asarray(gray)[0, 0].tolist() == [77, 77, 77]
    assert isinstance(palette, Image.Image) and palette.mode == "RGB"
    assert isinstance(clear, Image.Image) and np.asarray(clear)[0, 0].tolist() == [255, 255, 255]
    assert isinstance(half, Image.Image) and 120 <= np.asarray(half)[0, 0, 0] <= 130


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display after rotating 90 degrees clockwise
    result = decode_image(encode(image, "JPEG", quality=100, exif=exif.tobytes()))
    assert isinstance(result, Image.Image) and result.size == (20, 40)
    top = np.asarray(result)[5, 10]
    assert top[0] > 200 and top[2] < 50  # the red half is now on top


def test_pixel_limit_is_configurable() -> None:
    data = encode(gradient((40, 30)), "PNG")
    result = decode_image(data, max_pixels=1000)
    claimed = decode_image(png_claiming(20_000, 2_000), max_pixels=1000)
    assert isinstance(claimed, Skipped) and "20000x2000 = 40000000 pixels" in claimed.reason
    assert isinstance(result, Skipped) and "40x30 = 1200 pixels exceeds the limit 1000" in result.reason


def test_parquet_reader_on_cifar(cifar_sample: Path) -> None:
    records = list(itertools.islice(read_inputs(cifar_sample, "parquet"), 50))
    assert [r.key for r in records[:2]] == ["test_000000", "test_000001"]
    assert all(r.label is not None and 0 <= int(r.label) <= 9 for r in records)
    decoded = decode_image(records[0].data)
    assert isinstance(decoded, Image.Image) and decoded.size == (32, 32)


def make_corpus(root: Path) -> dict[str, bytes]:
    images = {
        "cat/a": encode(gradient(), "PNG"),
        "dog/b": encode(gradient(), "JPEG"),
        "c": encode(gradient(), "WEBP"),
    }
    suffixes = {"cat/a": "png", "dog/b": "jpg", "c": "webp"}
    for key, data in images.items():
        (root / f"{key}.{suffixes[key]}").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{key}.{suffixes[key]}").write_bytes(data)
    (root / "notes.txt").write_text("ignored")
    return images


def test_folder_and_webdataset_readers_local_and_s3(tmp_path: Path, s3_config: S3Config) -> None:
    images = make_corpus(tmp_path / "folder")
    shards = tmp_path / "wds"
    shards.mkdir()
    png = images["cat/a"]
    write_tar(shards / "000.tar", {"k1.png": png, "k1.cls": b"3\n", "k2.jpg": images["dog/b"]})
    write_tar(shards / "001.tar", {"k3.webp": images["c"], "k3.cls": b"7", "k4.cls": b"1"})

    expected_folder = [
        Record("c", images["c"], None),
        Record("cat/a", png, "cat"),
        Record("dog/b", images["dog/b"], "dog"),
    ]
    expected_wds = [
        Record("k1", png, "3"),
        Record("k2", images["dog/b"], None),
        Record("k3", images["c"], "7"),
        Record("k4", b"", "1"),
    ]
    assert list(read_inputs(tmp_path / "folder", "folder")) == expected_folder
    assert list(read_inputs(shards, "webdataset")) == expected_wds
    assert list(read_inputs(shards / "001.tar")) == expected_wds[2:]

    bucket = s3_store(s3_config)
    for path in [*(tmp_path / "folder").rglob("*"), *shards.glob("*.tar")]:
        if path.is_file():
            bucket.put_file(path.relative_to(tmp_path).as_posix(), path)
    root = f"s3://{bucket.bucket}/{bucket.prefix}"
    assert list(read_inputs(root + "folder", s3=s3_config)) == expected_folder
    assert list(read_inputs(root + "wds", "webdataset", s3=s3_config)) == expected_wds


def test_parquet_reader_from_s3_matches_local(cifar_sample: Path, s3_config: S3Config) -> None:
    bucket = s3_store(s3_config)
    bucket.put_file("cifar/test.parquet", cifar_sample)
    uri = f"s3://{bucket.bucket}/{bucket.prefix}cifar/test.parquet"
    remote = list(itertools.islice(read_inputs(uri, s3=s3_config), 20))
    local = list(itertools.islice(read_inputs(cifar_sample), 20))
    assert remote == local


def test_reader_errors_name_the_problem(tmp_path: Path, cifar_sample: Path) -> None:
    pq.write_table(pq.read_table(cifar_sample).drop(["jpg"]), tmp_path / "no-images.parquet")
    with pytest.raises(InvalidInputError, match=r"no-images.parquet has no column\(s\) \['jpg'\]"):
        next(read_inputs(tmp_path / "no-images.parquet"))
    with pytest.raises(InvalidInputError, match="unknown input format 'csv'"):
        read_inputs(tmp_path, "csv")
    (tmp_path / "bad.tar").write_bytes(b"not a tar archive" * 40)
    with pytest.raises(InvalidInputError, match="not a readable tar file"):
        list(read_inputs(tmp_path / "bad.tar"))


def test_class_names_file_names_index_labels_of_parquet_and_webdataset(
    tmp_path: Path, cifar_sample: Path
) -> None:
    names = tmp_path / "classes.txt"
    names.write_text(CIFAR10_CLASSES_FILE.read_text().strip() + "\n\n")  # trailing blank lines are fine
    classes = read_class_names(names)
    assert classes == list(CIFAR10_CLASSES)
    records = list(itertools.islice(read_inputs(cifar_sample, class_names=classes), 50))
    raw = list(itertools.islice(read_inputs(cifar_sample), 50))
    assert [r.label for r in records] == [classes[int(r.label or -1)] for r in raw]
    assert [r.key for r in records] == [r.key for r in raw] and records[0].data == raw[0].data
    write_tar(tmp_path / "000.tar", {"k1.png": encode(gradient(), "PNG"), "k1.cls": b"3\n", "k2.cls": b""})
    assert [r.label for r in read_inputs(tmp_path / "000.tar", class_names=classes)] == ["cat", ""]


def test_class_names_errors_name_the_file_and_the_label(tmp_path: Path, cifar_sample: Path) -> None:
    with pytest.raises(NotFoundError, match="class-names file .*missing.txt not found"):
        read_class_names(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(InvalidInputError, match="is empty"):
        read_class_names(tmp_path / "empty.txt")
    (tmp_path / "gap.txt").write_text("cat\n\ndog\n")
    with pytest.raises(InvalidInputError, match=r"blank lines \(class indices \[1\]\)"):
        read_class_names(tmp_path / "gap.txt")
    with pytest.raises(
        InvalidInputError, match="label '9' of input test_000000 is not a class index in 0..1"
    ):
        list(read_inputs(cifar_sample, class_names=["cat", "dog"]))
