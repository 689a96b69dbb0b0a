"""``cliplens heads describe|rank`` on the demo model: the tables, the store cache, and bad input."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from job_helpers import cifar_subset

from cliplens.cli import main
from cliplens.core.prompts import CIFAR10_CLASSES
from cliplens.store.sample import SAMPLE_PARQUET


def test_describe_prints_the_heads_and_reuses_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = tmp_path / "pool.txt"
    pool.write_text("a red object\n\na blue sky\nan animal\na vehicle\na green field\na dark image\n")
    args = ["heads", "describe", "--model", "demo", "--store", str(tmp_path / "store"), "--device", "cpu"]
    args += ["--max-images", "32", "--layer", "3", "--per-head", "3", "--pool", str(pool), "--top-n", "2"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "heads: computed and stored at" in first
    assert "(32 images, 3 descriptions per head; 2 of 4 heads, by variance)" in first
    rows = [line for line in first.splitlines() if line.startswith("| L3.H")]
    assert len(rows) == 2 and all(line.count("%)") == 3 for line in rows)
    key = first.split("stored at ")[1].split()[0]
    assert Path(key).is_file() and "/heads/demo/describe-" in key
    assert main(args) == 0
    second = capsys.readouterr().out
    assert f"heads: cached: read from {key}" in second
    assert second.split("\n\n", 1)[1] == first.split("\n\n", 1)[1]


def test_rank_prints_the_ranking_and_reuses_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parquet = cifar_subset(SAMPLE_PARQUET, tmp_path, 48)
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(CIFAR10_CLASSES) + "\n")
    args = ["heads", "rank", "--model", "demo", "--store", str(tmp_path / "store"), "--device", "cpu"]
    args += ["--dataset", str(parquet), "--labels-from", str(classes), "--max-images", "40", "--top-n", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "heads: computed and stored at" in first
    assert "(40 images, 10 classes; zero-shot accuracy" in first and "3 of 16 heads)" in first
    rows = [line for line in first.splitlines() if line.startswith(("| 1 |", "| 2 |", "| 3 |", "| 4 |"))]
    assert len(rows) == 3
    drops = [float(line.split("|")[4].strip().rstrip("%")) for line in rows]
    assert drops == sorted(drops, reverse=True)
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "heads: cached: read from" in second and second.split("\n\n", 1)[1] == first.split("\n\n", 1)[1]
    # The same images as a key in the store, labelled by name: another question, computed anew.
    table = pq.read_table(parquet)
    names = pa.array([CIFAR10_CLASSES[i] for i in table.column("label").to_pylist()])
    store_parquet = tmp_path / "store" / "data" / "named.parquet"
    store_parquet.parent.mkdir(parents=True)
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", names), store_parquet)
    keyed = ["heads", "rank", "--store", str(tmp_path / "store"), "--dataset", "data/named.parquet"]
    assert main([*keyed, "--device", "cpu", "--max-images", "40", "--top-n", "0"]) == 0
    out = capsys.readouterr().out
    assert "heads: computed and stored at" in out and "16 of 16 heads" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["describe", "--layer", "9"], "layer 9 is out of range: the model has layers 0..3"),
        (["describe", "--per-head", "0"], "per_head must be between 1 and 20"),
        (["describe", "--pool", "{tmp}/absent.txt"], "description pool not found at"),
        (["describe", "--pool", "{tmp}/empty.txt"], "the description pool must not be empty"),
        (["describe", "--max-images", "0"], "max_images must be between 1 and 5000, got 0"),
        (["rank", "--top-n", "-1"], "--top-n must be 0 (all) or more, got -1"),
        (["rank", "--dataset", "absent.parquet"], "dataset 'absent.parquet' not found in the store"),
        (["rank", "--dataset", "{tmp}/unlabelled.parquet"], "has no column(s) ['label']"),
        (["rank", "--dataset", "{tmp}"], "is a folder: give one parquet file"),
        (["rank", "--labels-from", "{tmp}/absent.txt"], "class-names file"),
    ],
)
def test_bad_input_exits_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    (tmp_path / "empty.txt").write_text("\n \n")
    table = pq.read_table(SAMPLE_PARQUET).slice(0, 4).drop_columns(["label"])
    pq.write_table(table, tmp_path / "unlabelled.parquet")
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in extra]
    assert main(["heads", args[0], "--store", str(tmp_path / "store"), "--device", "cpu", *args[1:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cliplens heads: error: ") and message in err
