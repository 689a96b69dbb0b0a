"""sparsify, saev and overcomplete import: every fixture written by the peer's own code
(tests/data/peer_saes/<peer>/<variant>/) read into cliplens gives the peer's latents and
reconstructions; the architectures cliplens lacks are refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.sae.interop import FORMATS, ImportOptions, peer_format
from cliplens.core.sae.modules import BatchTopKSae, JumpReluSae, ReluSae, Sae, TopKSae

PEERS = Path(__file__).resolve().parents[1] / "data" / "peer_saes"
UNSUPPORTED = {
    ("sparsify", "groupmax"): "groupmax",
    ("sparsify", "topk-skip-connection"): "skip_connection",
    ("sparsify", "transcoder"): "transcode",
}
MODULES = {"relu": ReluSae, "topk": TopKSae, "batchtopk": BatchTopKSae, "jumprelu": JumpReluSae}


def fixtures(peer: str) -> list[Path]:
    root = PEERS / peer
    return sorted(p for p in root.iterdir() if (p / "expected.json").is_file()) if root.is_dir() else []


ALL = [(peer, d) for peer in ("sparsify", "saev", "overcomplete") for d in fixtures(peer)]


def options_for(peer: str, expected: dict[str, object]) -> ImportOptions | None:
    """What the caller must say for a checkpoint that does not record it (overcomplete)."""
    if peer != "overcomplete" or expected["architecture"] == "jumprelu":
        return None
    arch = str(expected["architecture"])
    constructor = str(expected["constructor"])
    k = int(constructor.split("top_k=")[1].split(",")[0].rstrip(")")) if arch == "topk" else None
    threshold = expected.get("running_threshold") if arch == "batchtopk" else None
    return ImportOptions(arch=arch, k=k, threshold=None if threshold is None else float(str(threshold)))


def check_outputs(sae: Sae, io: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        z = sae.encode(io["x"])
        torch.testing.assert_close(z, io["latents"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sae.decode(io["latents"]), io["recon"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sae.decode(z), io["recon"], rtol=1e-5, atol=1e-6)


def test_formats_are_registered() -> None:
    assert {"saelens", "sparsify", "saev", "overcomplete"} <= set(FORMATS)
    assert [name for name, fmt in FORMATS.items() if fmt.writes] == ["saelens"]


@pytest.mark.skipif(not ALL, reason="no peer fixtures in tests/data/peer_saes")
@pytest.mark.parametrize(("peer", "directory"), ALL, ids=lambda v: v.name if isinstance(v, Path) else v)
def test_peer_fixtures(peer: str, directory: Path) -> None:
    expected = json.loads((directory / "expected.json").read_text())
    fmt = peer_format(peer)
    if (peer, directory.name) in UNSUPPORTED:
        with pytest.raises(InvalidInputError, match=UNSUPPORTED[peer, directory.name]):
            fmt.read(directory, model_id="demo", site="resid:0")
        return
    peer_sae = fmt.read(directory, model_id="demo", site="resid:0", options=options_for(peer, expected))
    sae = peer_sae.sae
    assert type(sae) is MODULES[expected["architecture"]]
    assert not sae.training and sae.cfg.site == "resid:0" and sae.cfg.model_id == "demo"
    assert peer_sae.source["format"] == peer
    check_outputs(sae, load_file(str(directory / "io.safetensors")))


def test_sparsify_needs_a_site_and_names_run_directories(tmp_path: Path) -> None:
    sparsify = peer_format("sparsify")
    run = tmp_path / "run"
    shutil.copytree(PEERS / "sparsify" / "topk", run / "layers.10")
    with pytest.raises(InvalidInputError, match=r"'layers\.10'.*pass --site"):
        sparsify.read(run / "layers.10", model_id="demo")
    with pytest.raises(InvalidInputError, match=r"import one of its directories: layers\.10"):
        sparsify.read(run, model_id="demo", site="final")
    with pytest.raises(NotFoundError, match="missing cfg.json"):
        sparsify.read(tmp_path / "nowhere", model_id="demo", site="final")
    peer = sparsify.read(run / "layers.10", model_id="demo", site="resid:1:patches")
    assert peer.source["hookpoint"] == "layers.10" and peer.sae.cfg.site == "resid:1:patches"
    assert isinstance(peer.sae, TopKSae) and peer.sae.cfg.k == 4


def test_sparsify_unexpected_tensors_are_refused(tmp_path: Path) -> None:
    shutil.copytree(PEERS / "sparsify" / "topk", tmp_path / "sae")
    tensors = load_file(str(tmp_path / "sae" / "sae.safetensors")) | {"extra": torch.zeros(2)}
    save_file(tensors, str(tmp_path / "sae" / "sae.safetensors"))
    with pytest.raises(InvalidInputError, match="unexpected tensors extra"):
        peer_format("sparsify").read(tmp_path / "sae", model_id="demo", site="final")


def test_options_a_format_does_not_read_are_refused() -> None:
    for name in ("sparsify", "saelens"):
        with pytest.raises(InvalidInputError, match=f"--arch, --k: not read by the {name} format"):
            peer_format(name).read(
                PEERS / "sparsify" / "topk", model_id="demo", options=ImportOptions(arch="relu", k=4)
            )
    with pytest.raises(InvalidInputError, match="--threshold: not read by the saev format"):
        peer_format("saev").read(
            PEERS / "saev" / "relu", model_id="demo", options=ImportOptions(threshold=1.0)
        )


def test_overcomplete_needs_what_its_state_dict_lacks() -> None:
    overcomplete = peer_format("overcomplete")

    def read(variant: str, **options: Any) -> None:
        overcomplete.read(
            PEERS / "overcomplete" / variant, model_id="demo", site="final", options=ImportOptions(**options)
        )

    with pytest.raises(InvalidInputError, match="do not record their architecture: pass --arch"):
        read("topk")
    with pytest.raises(InvalidInputError, match="pass --k for --arch topk"):
        read("topk", arch="topk")
    with pytest.raises(InvalidInputError, match="pass --threshold"):
        read("batchtopk", arch="batchtopk")
    with pytest.raises(InvalidInputError, match="--threshold is only read for --arch batchtopk"):
        read("topk", arch="topk", k=4, threshold=1.0)
    with pytest.raises(InvalidInputError, match="it is a JumpSAE, not --arch relu"):
        read("jumprelu", arch="relu")
    with pytest.raises(InvalidInputError, match="--arch jumprelu, but the state dict has no 'thresholds'"):
        read("relu", arch="jumprelu")
    with pytest.raises(InvalidInputError, match="'mp' is not supported.*MpSAE"):
        read("relu", arch="mp")
    with pytest.raises(InvalidInputError, match="pass --site"):
        overcomplete.read(
            PEERS / "overcomplete" / "relu", model_id="demo", options=ImportOptions(arch="relu")
        )


def test_overcomplete_reads_a_file_and_refuses_other_encoders(tmp_path: Path) -> None:
    overcomplete = peer_format("overcomplete")
    file = PEERS / "overcomplete" / "relu" / "model.pt"
    peer = overcomplete.read(file, model_id="demo", site="final", options=ImportOptions(arch="relu"))
    assert peer.source["path"] == str(file)
    state = torch.load(file, weights_only=True) | {"encoder.final_block.1.weight": torch.ones(3)}
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(InvalidInputError, match="other encoders"):
        overcomplete.read(tmp_path, model_id="demo", site="final", options=ImportOptions(arch="relu"))


def test_overcomplete_negative_batchtopk_threshold_keeps_the_relu() -> None:
    directory = PEERS / "overcomplete" / "batchtopk"
    options = ImportOptions(arch="batchtopk", threshold=-0.5, k=4)
    peer = peer_format("overcomplete").read(directory, model_id="demo", site="final", options=options)
    assert isinstance(peer.sae, BatchTopKSae) and float(peer.sae.threshold) == 0.0 and peer.sae.cfg.k == 4
    io = load_file(str(directory / "io.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(peer.sae.encode(io["x"]), io["pre_codes"].relu(), rtol=1e-5, atol=1e-6)


def test_saev_normalisation_folds_in(tmp_path: Path) -> None:
    directory = PEERS / "saev" / "relu"
    io = load_file(str(directory / "io.safetensors"))
    mean = torch.linspace(-1.0, 2.0, 16)
    scalar = 3.5
    raw = io["x"] * scalar + mean  # the activations whose normalisation (raw - mean) / scalar is x
    np.save(tmp_path / "mean.npy", mean.numpy())
    torch.save(mean, tmp_path / "mean.pt")
    save_file({"mean": mean}, str(tmp_path / "mean.safetensors"))
    for name in ("mean.npy", "mean.pt", "mean.safetensors"):
        options = ImportOptions(input_mean=str(tmp_path / name), input_scalar=scalar)
        peer = peer_format("saev").read(directory / "sae.pt", model_id="demo", site="final", options=options)
        assert "folded in" in peer.notes[0]
        with torch.no_grad():
            torch.testing.assert_close(peer.sae.encode(raw), io["latents"], rtol=1e-5, atol=1e-5)
            expected = io["recon"] * scalar + mean
            torch.testing.assert_close(peer.sae.decode(io["latents"]), expected, rtol=1e-5, atol=1e-5)
    np.save(tmp_path / "short.npy", np.zeros(3, dtype=np.float32))
    with pytest.raises(InvalidInputError, match=r"must be a \(16,\) vector"):
        peer_format("saev").read(
            directory,
            model_id="demo",
            site="final",
            options=ImportOptions(input_mean=str(tmp_path / "short.npy")),
        )
    with pytest.raises(InvalidInputError, match="--input-scalar must be positive"):
        peer_format("saev").read(
            directory, model_id="demo", site="final", options=ImportOptions(input_scalar=0.0)
        )


def test_saev_without_normalisation_says_so_and_needs_a_site(tmp_path: Path) -> None:
    peer = peer_format("saev").read(PEERS / "saev" / "relu", model_id="demo", site="final")
    assert "reads normalised inputs" in peer.notes[0]
    with pytest.raises(InvalidInputError, match="pass --site"):
        peer_format("saev").read(PEERS / "saev" / "relu", model_id="demo")
    (tmp_path / "sae.pt").write_bytes(b"not json\n" + (PEERS / "saev" / "relu" / "sae.pt").read_bytes())
    with pytest.raises(InvalidInputError, match="first line is not JSON"):
        peer_format("saev").read(tmp_path, model_id="demo", site="final")
    with pytest.raises(NotFoundError, match="no checkpoint file"):
        peer_format("saev").read(tmp_path / "nothing", model_id="demo", site="final")


def test_unsupported_formats_do_not_export(tmp_path: Path) -> None:
    sae = peer_format("saev").read(PEERS / "saev" / "relu", model_id="demo", site="final").sae
    for name in ("sparsify", "saev", "overcomplete"):
        with pytest.raises(InvalidInputError, match="export to the"):
            peer_format(name).write(sae, tmp_path / name)
