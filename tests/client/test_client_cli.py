"""The cliplens-client command against a canned server: plain-text tables and clear errors."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from canned_server import PNG_BYTES, serve_canned
from scripted_server import serve_scripted

from cliplens_client.cli import main
from cliplens_client.connection import TIMEOUT_METADATA


def run(server_address: str, *args: str) -> int:
    return main(["--address", server_address, "--token", "t0ken", "--app", "cliplens-test", *args])


def test_embed_prints_one_row_per_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve_canned() as server:
        image = tmp_path / "cat.png"
        image.write_bytes(PNG_BYTES)
        assert run(server.address, "embed", "--model", "demo", "--image", str(image), "--key", "k/1.png") == 0
        out = capsys.readouterr().out
        assert "model demo: 2 embeddings of width 3" in out
        assert str(image) in out and "k/1.png" in out


def test_attribute_prints_score_error_share_and_latents(capsys: pytest.CaptureFixture[str]) -> None:
    with serve_canned() as server:
        assert (
            run(server.address, "attribute", "--sae", "demo-topk", "--key", "k.png", "--text", "a cat") == 0
        )
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == 'text "a cat": score 0.2800, error share 0.125'
        assert lines[1].split() == ["rank", "latent", "activation", "attribution", "labels"]
        assert lines[3].split()[:4] == ["1", "7", "3.5000", "0.0700"] and "striped fur (0.31)" in lines[3]


def test_decompose_prints_layers_and_heatmap(capsys: pytest.CaptureFixture[str]) -> None:
    with serve_canned() as server:
        assert run(server.address, "decompose", "--model", "demo", "--key", "k.png", "--text", "a cat") == 0
        out = capsys.readouterr().out
        assert "score 0.2800, embedding term +0.0100" in out
        assert "patch heatmap (2x2):" in out and "+0.500 +0.500" in out


def test_topk_and_search_print_source_and_degraded(capsys: pytest.CaptureFixture[str]) -> None:
    with serve_canned() as server:
        assert run(server.address, "topk", "--sae", "demo-topk", "--latent", "7", "-k", "2") == 0
        out = capsys.readouterr().out
        assert "source: redis" in out and "degraded" not in out
        assert "cifar10-test/00042" in out
        assert run(server.address, "search", "--sae", "demo-topk", "--text", "stripes") == 0
        assert "source: store (degraded" in capsys.readouterr().out


def test_heads_describe_prints_one_row_per_head(capsys: pytest.CaptureFixture[str]) -> None:
    with serve_canned() as server:
        args = ["--pool", "a photo of a cat", "--pool", "stripes", "--per-head", "2", "--layer", "3"]
        assert run(server.address, "heads", "describe", "--model", "demo", *args) == 0
        request = server.requests["DescribeHeads"]
        time_left_ms = int(server.metadata["DescribeHeads"][TIMEOUT_METADATA])
    assert (list(request.pool), request.per_head, list(request.layers)) == (
        ["a photo of a cat", "stripes"],
        2,
        [3],
    )
    assert 30_000 < time_left_ms <= 600_000  # heads calls get a long default deadline
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "model demo: 2 heads over 2000 images; cached: read from the store"
    assert lines[1].split() == ["layer", "head", "variance", "explained", "descriptions"]
    assert lines[3].split()[:4] == ["3", "0", "2.5000", "0.3750"]
    assert lines[3].endswith("a photo of a cat (0.25); stripes (0.12)")
    assert lines[4].split() == ["3", "1", "0.0000", "0.0000", "-"]


def test_heads_rank_prints_heads_by_accuracy_drop(capsys: pytest.CaptureFixture[str]) -> None:
    with serve_canned() as server:
        args = ["--dataset", "pets.parquet", "--class-name", "cat", "--class-name", "dog", "--top", "2"]
        assert run(server.address, "--timeout", "5", "heads", "rank", "--model", "demo", *args) == 0
        request = server.requests["RankHeads"]
        time_left_ms = int(server.metadata["RankHeads"][TIMEOUT_METADATA])
    assert (request.dataset, list(request.class_names), request.top_n) == ("pets.parquet", ["cat", "dog"], 2)
    assert 0 < time_left_ms <= 5_000  # --timeout wins over the heads default
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "model demo: zero-shot accuracy 0.8750 on 500 images, 2 classes; "
        "cached: no, computed by this call and stored"
    )
    assert lines[1].split() == ["rank", "layer", "head", "accuracy", "accuracy", "drop"]
    assert [line.split() for line in lines[3:]] == [
        ["1", "3", "1", "0.7500", "0.1250"],
        ["2", "0", "2", "0.9062", "-0.0312"],
    ]


def test_heads_with_bad_arguments_exit_1_before_any_call(capsys: pytest.CaptureFixture[str]) -> None:
    with serve_canned() as server:
        assert run(server.address, "heads", "describe", "--model", "demo", "--per-head", "50") == 1
        assert server.requests == {}
    assert "per_head must be an integer <= 20" in capsys.readouterr().err


def test_models_sends_token_and_app(capsys: pytest.CaptureFixture[str]) -> None:
    with serve_scripted() as server:
        assert run(server.address, "models") == 0
        assert "demo-topk" in capsys.readouterr().out
        assert server.service.metadata[0]["authorization"] == "Bearer t0ken"
        assert server.service.metadata[0]["application"] == "cliplens-test"


def test_server_errors_exit_1_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with serve_scripted() as server:
        server.service.failures = [grpc.StatusCode.NOT_FOUND]
        assert run(server.address, "models") == 1
        assert "ListModels failed with NOT_FOUND: scripted NOT_FOUND" in capsys.readouterr().err
