"""SAELens import/export: checkpoints in SAELens's on-disk layout, checked against an independent
float64 implementation of SAELens's inference math (written from sae_lens/saes/*.py, 6.x), and against
fixtures written by SAELens's own code when tests/data/peer_saes/saelens/ holds them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from cliplens.core.errors import InvalidInputError
from cliplens.core.sae import build_sae, load_sae, make_config, save_sae
from cliplens.core.sae.interop import peer_format
from cliplens.core.sae.modules import BatchTopKSae, JumpReluSae, Sae
from saelens_reference import (
    CASES,
    D_IN,
    D_SAE,
    K,
    close,
    inputs,
    saelens_decode,
    saelens_encode,
    write_saelens,
)

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "peer_saes" / "saelens"
SAELENS = peer_format("saelens")


@pytest.mark.parametrize("name", list(CASES))
def test_import_matches_saelens_math(tmp_path: Path, name: str) -> None:
    cfg = CASES[name]
    tensors = write_saelens(tmp_path / name, cfg)
    peer = SAELENS.read(tmp_path / name, model_id="demo", site="resid:3")
    ref_cfg = {"architecture": "topk", "k": K} if name.startswith("pre-6") else cfg
    x = inputs()
    z_ref = saelens_encode(ref_cfg, tensors, x)
    z = peer.sae.encode(x)
    close(z, z_ref)
    close(peer.sae.decode(z), saelens_decode(ref_cfg, tensors, z_ref))
    assert (z_ref > 0).sum(-1).float().mean() > 0  # the check is not vacuous
    assert peer.source["format"] == "saelens"
    assert peer.sae.cfg.site == "resid:3" and peer.sae.cfg.model_id == "demo"


def test_jumprelu_negative_thresholds_keep_the_relu(tmp_path: Path) -> None:
    cfg = {"architecture": "jumprelu", "apply_b_dec_to_input": True}
    tensors = write_saelens(tmp_path, cfg, thresholds=(-0.5, 0.5))
    peer = SAELENS.read(tmp_path, model_id="demo", site="final")
    x = inputs()
    close(peer.sae.encode(x), saelens_encode(cfg, tensors, x))
    assert (peer.sae.encode(x) >= 0).all()


def test_decoder_kept_exactly_through_a_checkpoint(tmp_path: Path) -> None:
    tensors = write_saelens(tmp_path / "peer", CASES["standard"])
    peer = SAELENS.read(tmp_path / "peer", model_id="demo", site="final")
    save_sae(peer.sae, tmp_path / "ours", source=peer.source)
    loaded = load_sae(tmp_path / "ours")
    assert torch.equal(loaded.sae.W_dec, tensors["W_dec"])
    assert loaded.source["format"] == "saelens"
    close(loaded.sae.encode(inputs()), saelens_encode(CASES["standard"], tensors, inputs()))


def test_trained_checkpoint_reads_without_source(tmp_path: Path) -> None:
    sae = build_sae(make_config("relu", d_in=D_IN, d_sae=D_SAE), seed=0)
    save_sae(sae, tmp_path)
    assert "source" not in json.loads((tmp_path / "cfg.json").read_text())
    assert load_sae(tmp_path).source == {}


def test_expected_average_scaler_file_sets_input_scale(tmp_path: Path) -> None:
    cfg = {"architecture": "standard", "normalize_activations": "expected_average_only_in"}
    tensors = write_saelens(tmp_path / "with", cfg)
    (tmp_path / "with" / "activation_scaler.json").write_text(json.dumps({"scaling_factor": 0.37}))
    peer = SAELENS.read(tmp_path / "with", model_id="demo", site="final")
    x = inputs()
    z_ref = saelens_encode(cfg, tensors, x, scale=0.37)
    close(peer.sae.encode(x), z_ref)
    close(peer.sae.decode(z_ref.float()), saelens_decode(cfg, tensors, z_ref, scale=0.37))
    assert any("0.37" in note for note in peer.notes)
    write_saelens(tmp_path / "without", cfg)
    plain = SAELENS.read(tmp_path / "without", model_id="demo", site="final")
    close(plain.sae.encode(x), saelens_encode(cfg, tensors, x))


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"architecture": "gated"}, "standard, topk, jumprelu"),
        ({"architecture": "standard", "normalize_activations": "layer_norm"}, "layer_norm"),
        (
            {"architecture": "standard", "normalize_activations": "constant_norm_rescale"},
            "constant_norm_rescale",
        ),
        ({"architecture": "standard", "reshape_activations": "hook_z"}, "hook_z"),
    ],
)
def test_unsupported_configs_are_named(tmp_path: Path, cfg: dict[str, Any], message: str) -> None:
    write_saelens(tmp_path, cfg)
    with pytest.raises(InvalidInputError, match=message):
        SAELENS.read(tmp_path, model_id="demo", site="final")


def test_site_is_required_for_a_hook_name(tmp_path: Path) -> None:
    write_saelens(
        tmp_path, {"architecture": "standard", "metadata": {"hook_name": "blocks.5.hook_resid_post"}}
    )
    with pytest.raises(InvalidInputError, match="--site"):
        SAELENS.read(tmp_path, model_id="demo")


def test_unexpected_tensors_are_rejected(tmp_path: Path) -> None:
    tensors = write_saelens(tmp_path, {"architecture": "standard"})
    save_file(tensors | {"r_mag": torch.zeros(D_SAE)}, str(tmp_path / "sae_weights.safetensors"))
    with pytest.raises(InvalidInputError, match="r_mag"):
        SAELENS.read(tmp_path, model_id="demo", site="final")


# -- export -------------------------------------------------------------------------------------------
def random_sae(arch: str, **fields: Any) -> Sae:
    sae = build_sae(
        make_config(arch, d_in=D_IN, d_sae=D_SAE, model_id="demo", site="resid:2", **fields), seed=3
    )
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=g) * 0.3)
        sae.input_scale.fill_(1.7)
        if isinstance(sae, BatchTopKSae):
            sae.threshold.fill_(0.2)
        if isinstance(sae, JumpReluSae):
            sae.log_threshold.copy_(torch.empty(D_SAE).uniform_(0.05, 0.6, generator=g).log())
    return sae.eval()


EXPORTS = {
    "relu": ("standard", {}),
    "topk": ("topk", {"k": K}),
    "batchtopk": ("jumprelu", {"k": K}),
    "matryoshka": ("jumprelu", {"k": K}),
    "jumprelu": ("jumprelu", {}),
}


@pytest.mark.parametrize("arch", list(EXPORTS))
def test_export_gives_saelens_the_same_outputs_and_round_trips(tmp_path: Path, arch: str) -> None:
    peer_arch, fields = EXPORTS[arch]
    sae = random_sae(arch, **fields)
    SAELENS.write(sae, tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "cfg.json").read_text())
    tensors = load_file(str(tmp_path / "out" / "sae_weights.safetensors"))
    assert cfg["architecture"] == peer_arch and cfg["normalize_activations"] == "none"
    assert cfg["apply_b_dec_to_input"] is True
    x = inputs()
    z = sae.encode(x)
    close(saelens_encode(cfg, tensors, x), z)
    close(saelens_decode(cfg, tensors, z.double()), sae.decode(z))
    back = SAELENS.read(tmp_path / "out", model_id="demo").sae  # the site comes from the export
    assert back.cfg.site == "resid:2"
    close(back.encode(x), z)
    close(back.decode(z), sae.decode(z))


def test_export_refuses_a_negative_batchtopk_threshold(tmp_path: Path) -> None:
    sae = random_sae("batchtopk", k=K)
    with torch.no_grad():
        sae.threshold.fill_(-0.1)
    with pytest.raises(InvalidInputError, match="negative threshold"):
        SAELENS.write(sae, tmp_path)


# -- fixtures written by SAELens itself ------------------------------------------------------------
FIXTURE_DIRS = (
    sorted(p for p in FIXTURES.iterdir() if (p / "expected.json").is_file()) if FIXTURES.is_dir() else []
)


@pytest.mark.skipif(not FIXTURE_DIRS, reason="no SAELens fixtures in tests/data/peer_saes/saelens")
@pytest.mark.parametrize("directory", FIXTURE_DIRS, ids=lambda p: p.name)
def test_saelens_fixtures(directory: Path) -> None:
    cfg = json.loads((directory / "cfg.json").read_text())  # batchtopk is saved by SAELens as jumprelu
    io = load_file(str(directory / "io.safetensors"))
    supported = cfg["architecture"] in ("standard", "topk", "jumprelu") and cfg.get(
        "normalize_activations"
    ) in (
        "none",
        "expected_average_only_in",
    )
    if not supported:
        with pytest.raises(InvalidInputError):
            SAELENS.read(directory, model_id="demo", site="resid:0")
        return
    sae = SAELENS.read(directory, model_id="demo", site="resid:0").sae
    trainer = "latents_trainer" in io and (directory / "activation_scaler.json").is_file()
    latents, recon = (io["latents_trainer"], io["recon_trainer"]) if trainer else (io["latents"], io["recon"])
    with torch.no_grad():
        z = sae.encode(io["x"])
        torch.testing.assert_close(z, latents.float(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sae.decode(z), recon.float(), rtol=1e-5, atol=1e-6)
