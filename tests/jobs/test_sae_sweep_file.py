"""Sweep files of ``cliplens train-sae --sweep``: shared settings, per-SAE overrides, and their errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cliplens.core.errors import InvalidInputError
from cliplens.jobs import train_sae_command
from cliplens.jobs.train_sae_command import sweep_jobs

pytestmark = pytest.mark.unit  # no servers, no Ray: only the file and the flags
D_IN = 32
EXAMPLE = """\
# shared settings
epochs: 5
arch: topk
saes:
  - sae_id: topk-k16
    k: 16
  - sae_id: topk-k32
    k: 32
  - sae_id: relu-l1-3
    arch: relu
    l1_coeff: 0.003
"""


def command_line(path: Path, *flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_sae_command.add_arguments(parser)
    return parser.parse_args(["--run", "run-1", "--sweep", str(path), *flags])


def jobs_of(tmp_path: Path, text: str, *flags: str) -> list:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return sweep_jobs(command_line(path, *flags), D_IN)


def test_the_documented_example(tmp_path: Path) -> None:
    jobs = jobs_of(tmp_path, EXAMPLE)
    assert [(j.sae_id, j.arch, j.fields) for j in jobs] == [
        ("topk-k16", "topk", {"k": 16}),
        ("topk-k32", "topk", {"k": 32}),
        ("relu-l1-3", "relu", {"l1_coeff": 0.003}),
    ]
    for job in jobs:
        assert (job.run_id, job.d_sae, job.train.epochs, job.batch_size, job.batch_seed) == (
            "run-1",
            8 * D_IN,
            5,
            1024,
            0,
        )


def test_precedence_entry_file_command_line_and_json(tmp_path: Path) -> None:
    document = {
        "seed": 3,
        "lr": "3e-4",  # YAML reads 3e-4 (no dot) as text; it is a number all the same
        "expansion": 2,
        "saes": [
            {"sae_id": "a", "k": 4},
            {"sae_id": "b", "k": 4, "seed": 7, "d_sae": 100, "lr": 0.01},
            {"sae_id": "m", "arch": "matryoshka", "k": 4, "prefixes": [16, 64]},
        ],
    }
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(document))
    a, b, m = sweep_jobs(command_line(path, "--epochs", "2", "--batch-size", "64", "--device", "cpu"), D_IN)
    assert (a.train.epochs, a.batch_size, a.train.device) == (2, 64, "cpu")  # the command line's
    assert (a.train.seed, a.order_seed, a.train.lr, a.d_sae) == (3, 3, 3e-4, 64)
    # an entry's seed changes its init only: the batch order stays the sweep's
    assert (b.train.seed, b.order_seed, b.batch_seed, b.train.lr, b.d_sae) == (7, 3, 3, 0.01, 100)
    assert m.fields == {"k": 4, "prefixes": (16, 64)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs: 2\n", "expected a mapping of shared settings with a non-empty list 'saes'"),
        ("saes: []\n", "non-empty list 'saes'"),
        ("epoch: 2\nsaes: [{sae_id: a}]\n", "sweep.yaml: unknown key 'epoch'; settings are "),
        ("saes: [{sae_id: a, kk: 3}]\n", "SAE 'a' (saes[0]): unknown key 'kk'"),
        ("saes: [{k: 3}]\n", "saes[0] must be a mapping with a sae_id"),
        ("saes: [{sae_id: a}, {sae_id: b}, {sae_id: a}]\n", "SAE 'a' (saes[2]): sae_id 'a' is already used"),
        ("saes: [{sae_id: 'a b'}]\n", "SAE 'a b' (saes[0]): invalid SAE id"),
        ("saes: [{sae_id: a, epochs: 3}]\n", "SAE 'a' (saes[0]): 'epochs' is shared by every SAE of a sweep"),
        ("saes: [{sae_id: a, batch_size: 8}]\n", "'batch_size' is shared by every SAE"),
        ("saes: [{sae_id: a, buffer_rows: 8}]\n", "'buffer_rows' is shared by every SAE"),
        (
            "saes: [{sae_id: r, arch: relu, k: 8}]\n",
            "SAE 'r' (saes[0]): k do(es) not apply to SAE architecture 'relu'",
        ),
        (
            "k: 8\nsaes: [{sae_id: t}, {sae_id: r, arch: relu}]\n",
            "SAE 'r' (saes[1]): k (set at the top level) do(es) not apply to SAE architecture 'relu'",
        ),
        ("saes: [{sae_id: a, k: many}]\n", "SAE 'a' (saes[0]): k must be an integer, got 'many'"),
        ("saes: [{sae_id: a, k: true}]\n", "k must be an integer, got True"),
        ("saes: [{sae_id: a, lr: fast}]\n", "lr must be a number, got 'fast'"),
        (
            "saes: [{sae_id: a, arch: lstm}]\n",
            "arch must be one of batchtopk, jumprelu, matryoshka, relu, topk",
        ),
        ("saes: [{sae_id: a, d_sae: 64, expansion: 4}]\n", "give d_sae or expansion, not both"),
        (
            "saes: [{sae_id: m, arch: matryoshka, prefixes: 'a,b'}]\n",
            "prefixes must be comma-separated integers",
        ),
        ("saes: [{sae_id: a\n", "cannot read it"),
    ],
)
def test_errors_name_the_entry_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match="^sweep file .*sweep.yaml") as error:
        jobs_of(tmp_path, text)
    assert message in str(error.value)
