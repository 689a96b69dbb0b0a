"""``cliplens saes``: list, import, export and pull, run in-process against a local tmp store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cliplens.cli import main
from cliplens.core.sae import build_sae, make_config
from cliplens.store.objects import open_store
from cliplens.store.saes import load_sae_from_store, read_sae_record, save_sae_to_store
from saelens_reference import CASES, inputs, saelens_encode, write_saelens

pytestmark = pytest.mark.unit


def test_list_shows_trained_and_imported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    sae = build_sae(make_config("topk", d_in=16, d_sae=32, k=4, model_id="demo", site="resid:1"), seed=0)
    save_sae_to_store(open_store(store), "mine", sae, {"l0": 4.0, "r2": 0.91234})
    tensors = write_saelens(tmp_path / "peer", CASES["jumprelu"])
    args = [
        "--format",
        "saelens",
        "--model",
        "demo",
        "--site",
        "resid:2",
        "--sae-id",
        "theirs",
        "--store",
        str(store),
    ]
    assert main(["saes", "import", str(tmp_path / "peer"), *args]) == 0
    assert "saved 'theirs' (jumprelu, d_in 16, d_sae 32" in capsys.readouterr().out
    assert main(["saes", "list", "--store", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["sae", "id", "model"]
    mine = next(line for line in lines if line.startswith("mine"))
    theirs = next(line for line in lines if line.startswith("theirs"))
    assert mine.split() == [
        "mine",
        "demo",
        "resid:1",
        "topk",
        "16",
        "32",
        "4.00",
        "0.9123",
        "trained",
        "here",
    ]
    assert f"imported from saelens ({(tmp_path / 'peer').resolve()})" in theirs
    assert theirs.split()[1:7] == ["demo", "resid:2", "jumprelu", "16", "32", "-"]
    loaded = load_sae_from_store(open_store(store), "theirs")
    assert torch.equal(loaded.sae.W_dec, tensors["W_dec"])
    torch.testing.assert_close(
        loaded.sae.encode(inputs()).double(),
        saelens_encode(CASES["jumprelu"], tensors, inputs()),
        rtol=1e-5,
        atol=1e-5,
    )


def test_import_errors_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_saelens(tmp_path / "peer", {"architecture": "gated"})
    base = [
        "saes",
        "import",
        str(tmp_path / "peer"),
        "--format",
        "saelens",
        "--sae-id",
        "x",
        "--store",
        str(tmp_path),
    ]
    assert main([*base, "--model", "demo", "--site", "final"]) == 2
    assert "'gated' is not supported; supported: standard, topk, jumprelu" in capsys.readouterr().err
    assert main([*base, "--model", "no-such-model", "--site", "final"]) == 2
    assert "unknown model id 'no-such-model'" in capsys.readouterr().err
    write_saelens(tmp_path / "hooked", {"architecture": "standard", "hook_name": "blocks.1.hook_resid_post"})
    base[2] = str(tmp_path / "hooked")
    assert main([*base, "--model", "demo"]) == 2
    assert "pass --site" in capsys.readouterr().err


def test_export_then_import_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    sae = build_sae(
        make_config("jumprelu", d_in=16, d_sae=32, model_id="demo", site="resid:0"), seed=1
    ).eval()
    with torch.no_grad():
        sae.input_scale.fill_(0.5)
        sae.b_pre.normal_()
    save_sae_to_store(open_store(store), "ours", sae)
    assert (
        main(["saes", "export", "ours", "--format", "saelens", str(tmp_path / "out"), "--store", str(store)])
        == 0
    )
    assert (tmp_path / "out" / "sae_weights.safetensors").is_file()
    args = ["--format", "saelens", "--model", "demo", "--sae-id", "back", "--store", str(store)]
    assert main(["saes", "import", str(tmp_path / "out"), *args]) == 0
    back = load_sae_from_store(open_store(store), "back").sae
    x = inputs()
    torch.testing.assert_close(back.encode(x), sae.encode(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(back.decode(sae.encode(x)), sae.decode(sae.encode(x)), rtol=1e-5, atol=1e-6)


def test_pull_from_an_extra_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_saelens(tmp_path / "peers" / "one", CASES["topk"])
    registry = tmp_path / "saes.json"
    registry.write_text(
        json.dumps(
            {
                "one": {"source": "peers/one", "format": "saelens", "model": "demo", "site": "resid:1"},
                "far": {"source": "hub:org/repo/layer_1", "format": "saelens", "model": "demo"},
            }
        )
    )
    monkeypatch.setenv("CLIPLENS_SAES", str(registry))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    store = tmp_path / "store"
    assert main(["saes", "pull", "one", "--store", str(store)]) == 0
    record = read_sae_record(open_store(store), "one")
    assert record.cfg.arch == "topk" and record.cfg.site == "resid:1"
    assert record.source["path"] == str(tmp_path / "peers" / "one")
    assert main(["saes", "pull", "far", "--store", str(store)]) == 2
    assert "hub is not reachable from here" in capsys.readouterr().err
    assert main(["saes", "pull", "nope", "--store", str(store)]) == 2
    assert "registered ids: far, one" in capsys.readouterr().err


def test_pull_from_a_hub_cache_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_saelens(tmp_path / "hf" / "models--org--repo" / "snapshots" / "abc" / "layer_1", CASES["standard"])
    registry = tmp_path / "saes.json"
    entry = {"source": "hub:org/repo/layer_1", "format": "saelens", "model": "demo", "site": "final"}
    registry.write_text(json.dumps({"cached": entry}))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    store = tmp_path / "store"
    assert main(["saes", "pull", "cached", "--registry", str(registry), "--store", str(store)]) == 0
    assert read_sae_record(open_store(store), "cached").source["path"] == "hub:org/repo/layer_1"


def test_shipped_registry_is_empty() -> None:
    from cliplens.core.sae.sources import DEFAULT_SAE_REGISTRY

    assert json.loads(DEFAULT_SAE_REGISTRY.read_text()) == {}


PEERS = Path(__file__).resolve().parent / "data" / "peer_saes"


@pytest.mark.parametrize(
    ("path", "fmt", "extra", "arch"),
    [
        ("sparsify/topk", "sparsify", [], "topk"),
        ("saev/relu/sae.pt", "saev", [], "relu"),
        ("overcomplete/topk-multiplier/model.pt", "overcomplete", ["--arch", "topk", "--k", "4"], "topk"),
        (
            "overcomplete/batchtopk",
            "overcomplete",
            ["--arch", "batchtopk", "--threshold", "2.5804708"],
            "batchtopk",
        ),
    ],
)
def test_import_peer_fixtures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str, fmt: str, extra: list[str], arch: str
) -> None:
    store = tmp_path / "store"
    args = ["--format", fmt, "--model", "demo", "--site", "resid:1", "--sae-id", "p", "--store", str(store)]
    assert main(["saes", "import", str(PEERS / path), *args, *extra]) == 0
    out = capsys.readouterr().out
    assert f"saved 'p' ({arch}, d_in 16, d_sae 32, demo resid:1)" in out
    assert f"imported from {fmt}" in out
    if fmt != "sparsify":
        assert "saes import: note:" in out
    sae = load_sae_from_store(open_store(store), "p").sae
    io = load_file(
        str((PEERS / path if (PEERS / path).is_dir() else (PEERS / path).parent) / "io.safetensors")
    )
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(io["x"]), io["latents"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sae.decode(io["latents"]), io["recon"], rtol=1e-5, atol=1e-6)


def test_peer_import_errors_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["saes", "import", "--model", "demo", "--site", "final", "--sae-id", "x", "--store", str(tmp_path)]
    assert main([*base, str(PEERS / "overcomplete" / "topk"), "--format", "overcomplete"]) == 2
    assert "overcomplete checkpoints do not record their architecture: pass --arch" in capsys.readouterr().err
    assert main([*base, str(PEERS / "sparsify" / "groupmax"), "--format", "sparsify"]) == 2
    assert "sparsify activation 'groupmax' is not supported" in capsys.readouterr().err
    assert main([*base, str(PEERS / "sparsify" / "topk"), "--format", "sparsify", "--k", "4"]) == 2
    assert "--k: not read by the sparsify format" in capsys.readouterr().err


def test_export_offers_only_formats_with_a_writer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["saes", "export", "x", "--format", "sparsify", str(tmp_path / "out"), "--store", str(tmp_path)])
    assert "invalid choice: 'sparsify'" in capsys.readouterr().err
