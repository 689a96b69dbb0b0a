"""Fixture generator for peer SAE libraries.  Runs INSIDE the throwaway venv.

Do not import this from the cliplens test suite: it needs torch and the peer
libraries.  `tests/peer_saes/make_fixtures.py` creates the venv and runs

    <venv>/bin/python tests/peer_saes/peer_writer.py write <peer> <out_root> <result.json>
    <venv>/bin/python tests/peer_saes/peer_writer.py write-serve <peer> <out_root>/serve <result.json>
    <venv>/bin/python tests/peer_saes/peer_writer.py check-export <dir> <result.json>

Each fixture directory holds exactly what the peer's own save function wrote,
plus `io.safetensors` (inputs and the peer's own outputs) and `expected.json`.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import math
import os
import shutil
import sys
import traceback
from pathlib import Path

os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")  # eager decoder on CPU
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np
import torch
from safetensors.torch import save_file

D_IN = 16
D_SAE = 32
K = 4
N_ROWS = 8
INPUT_SEED = 20260
INPUT_SCALE = 2.0
INPUT_SHIFT = 0.3


def fixed_inputs() -> torch.Tensor:
    """x: (8, 16) float32 from numpy's PCG64 (stable across numpy versions)."""
    rng = np.random.default_rng(INPUT_SEED)
    x = rng.standard_normal((N_ROWS, D_IN)).astype(np.float32) * INPUT_SCALE + INPUT_SHIFT
    return torch.from_numpy(x.astype(np.float32))


def calibration_inputs() -> torch.Tensor:
    """A second fixed batch, used only to learn BatchTopK thresholds with the peers' own code."""
    rng = np.random.default_rng(INPUT_SEED + 1)
    x = rng.standard_normal((N_ROWS, D_IN)).astype(np.float32) * INPUT_SCALE + INPUT_SHIFT
    return torch.from_numpy(x.astype(np.float32))


CALIB_DOC = (
    f"numpy.random.default_rng({INPUT_SEED + 1}).standard_normal(({N_ROWS}, {D_IN})) "
    f"as float32 * {INPUT_SCALE} + {INPUT_SHIFT}"
)

INPUTS_DOC = {
    "x": f"numpy.random.default_rng({INPUT_SEED}).standard_normal(({N_ROWS}, {D_IN})) "
    f"as float32 * {INPUT_SCALE} + {INPUT_SHIFT}",
}


def version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not-installed"


def gen(seed: int) -> torch.Generator:
    g = torch.Generator().manual_seed(seed)
    return g


def rand_like(t: torch.Tensor, g: torch.Generator, scale: float) -> torch.Tensor:
    return (torch.randn(t.shape, generator=g, dtype=torch.float32) * scale).to(t.dtype)


def rand_uniform(shape, g: torch.Generator, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(shape, generator=g, dtype=torch.float32) * (hi - lo) + lo


def tensor_stats(latents: torch.Tensor) -> dict:
    nz = (latents != 0).sum(dim=-1)
    return {
        "active_per_row": [int(v) for v in nz.tolist()],
        "total_active": int(nz.sum()),
    }


def dir_listing(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(d.iterdir()) if p.is_file()}


def finish(d: Path, io: dict[str, torch.Tensor], expected: dict) -> dict:
    io = {k: v.detach().cpu().contiguous() for k, v in io.items()}
    save_file(io, str(d / "io.safetensors"))
    expected.setdefault("inputs", INPUTS_DOC)
    expected["io_tensors"] = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in io.items()
    }
    expected["files"] = dir_listing(d) | {"expected.json": 0}
    (d / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    expected["files"]["expected.json"] = (d / "expected.json").stat().st_size
    (d / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    return {"dir": str(d), "files": dir_listing(d)}


def fresh_dir(root: Path, peer: str, name: str) -> Path:
    d = root / peer / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


# --------------------------------------------------------------------------- SAELens
def saelens_fixtures(root: Path) -> list[dict]:
    import sae_lens
    from sae_lens import SAE
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.gated_sae import GatedSAE, GatedSAEConfig
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
    from sae_lens.training.activation_scaler import ActivationScaler

    ver = version("sae-lens")
    x = fixed_inputs()
    out: list[dict] = []

    def randomise(sae, seed: int, thresholds: tuple[float, float] | None = None):
        g = gen(seed)
        with torch.no_grad():
            for name, p in sorted(sae.named_parameters()):
                if name == "W_enc":
                    p.copy_(rand_like(p, g, 1.0 / math.sqrt(D_IN)))
                elif name == "W_dec":
                    p.copy_(rand_like(p, g, 0.5))
                elif name == "threshold":
                    p.copy_(rand_uniform(p.shape, g, *thresholds))
                elif name == "r_mag":
                    p.copy_(rand_like(p, g, 0.3))
                else:  # b_enc, b_dec, b_gate, b_mag
                    p.copy_(rand_like(p, g, 0.3))

    def run(sae, d: Path, expected: dict, extra_io: dict | None = None):
        sae.eval()
        with torch.no_grad():
            lat = sae.encode(x)
            rec = sae.decode(lat)
            fwd = sae(x)
        io = {"x": x, "latents": lat, "recon": rec}
        if not torch.equal(fwd, rec):
            io["forward"] = fwd
        expected["forward_equals_decode_encode"] = bool(torch.equal(fwd, rec))
        io |= extra_io or {}
        expected["latent_stats"] = tensor_stats(lat)
        # read back with the peer's own loader and check it reproduces the outputs
        back = SAE.load_from_disk(str(d))
        with torch.no_grad():
            lat2 = back.encode(x)
            rec2 = back.decode(lat2)
        expected["reload_check"] = {
            "loader": "sae_lens.SAE.load_from_disk",
            "loaded_class": type(back).__name__,
            "latents_max_abs_diff": float((lat2 - lat).abs().max()),
            "recon_max_abs_diff": float((rec2 - rec).abs().max()),
        }
        return finish(d, io, expected)

    def base_expected(arch: str, cls, cfg, save_call: str, **kw) -> dict:
        return {
            "peer": "saelens",
            "package": "sae-lens",
            "version": ver,
            "module_version": getattr(sae_lens, "__version__", None),
            "architecture": arch,
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "config": {k: v for k, v in cfg.to_dict().items() if k != "metadata"},
            "save_call": save_call,
            "load_call": "sae_lens.SAE.load_from_disk(DIR)",
            "encode_call": "sae.encode(x)  (eval mode, torch.no_grad)",
            "decode_call": "sae.decode(sae.encode(x))",
            "forward_call": "sae(x)",
            "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
            "normalize_activations": cfg.normalize_activations,
            **kw,
        }

    specs = [
        # name, config class, SAE class, config kwargs, threshold range, notes
        ("standard", StandardSAEConfig, StandardSAE, {"apply_b_dec_to_input": True}, None),
        ("standard-no-bdec-input", StandardSAEConfig, StandardSAE, {"apply_b_dec_to_input": False}, None),
        (
            "standard-constant-norm-rescale",
            StandardSAEConfig,
            StandardSAE,
            {"apply_b_dec_to_input": True, "normalize_activations": "constant_norm_rescale"},
            None,
        ),
        (
            "standard-layer-norm",
            StandardSAEConfig,
            StandardSAE,
            {"apply_b_dec_to_input": False, "normalize_activations": "layer_norm"},
            None,
        ),
        ("topk", TopKSAEConfig, TopKSAE, {"k": K, "apply_b_dec_to_input": True}, None),
        (
            "topk-rescale-acts-by-decoder-norm",
            TopKSAEConfig,
            TopKSAE,
            {"k": K, "apply_b_dec_to_input": False, "rescale_acts_by_decoder_norm": True},
            None,
        ),
        ("jumprelu", JumpReLUSAEConfig, JumpReLUSAE, {"apply_b_dec_to_input": True}, (0.2, 1.2)),
        (
            "jumprelu-no-bdec-input",
            JumpReLUSAEConfig,
            JumpReLUSAE,
            {"apply_b_dec_to_input": False},
            (0.2, 1.2),
        ),
        ("gated", GatedSAEConfig, GatedSAE, {"apply_b_dec_to_input": True}, None),
    ]
    for i, (name, cfg_cls, cls, kw, thr) in enumerate(specs):
        try:
            d = fresh_dir(root, "saelens", name)
            cfg = cfg_cls(d_in=D_IN, d_sae=D_SAE, **kw)
            sae = cls(cfg)
            randomise(sae, 1000 + i, thr)
            sae.save_model(str(d))
            exp = base_expected(cfg.architecture(), cls, cfg, "sae.save_model(DIR)")
            if thr:
                exp["threshold_init"] = f"uniform({thr[0]}, {thr[1]})"
                with torch.no_grad():
                    sae_in = sae.process_sae_in(x)
                    pre = sae_in @ sae.W_enc + sae.b_enc
                exp["relu_positive_but_below_threshold"] = int(((pre > 0) & (pre <= sae.threshold)).sum())
            if name == "gated":
                exp["note"] = (
                    "gated: recorded only as an example of an architecture cliplens does not support"
                )
            out.append({"fixture": f"saelens/{name}", **run(sae, d, exp)})
        except Exception as e:
            out.append({"fixture": f"saelens/{name}", "error": repr(e), "traceback": traceback.format_exc()})

    # expected_average_only_in: a scaling factor learnt in training.  At inference SAELens
    # ignores this setting (identity); at the end of training the trainer folds it into
    # the weights with fold_activation_norm_scaling_factor (cfg becomes "none"); a
    # mid-training checkpoint keeps the setting and writes activation_scaler.json.
    scale = 0.37
    try:
        d = fresh_dir(root, "saelens", "standard-expected-average-unfolded")
        cfg = StandardSAEConfig(
            d_in=D_IN,
            d_sae=D_SAE,
            apply_b_dec_to_input=True,
            normalize_activations="expected_average_only_in",
        )
        sae = StandardSAE(cfg)
        randomise(sae, 1100)
        sae.save_model(str(d))
        scaler = ActivationScaler(scaling_factor=scale)
        scaler.save(str(d / "activation_scaler.json"))
        sae.eval()
        with torch.no_grad():
            lat_t = sae.encode(scaler.scale(x))
            rec_t = scaler.unscale(sae.decode(lat_t))
        exp = base_expected(
            "standard",
            StandardSAE,
            cfg,
            "sae.save_model(DIR); ActivationScaler(scaling_factor=s).save(DIR/'activation_scaler.json')  "
            "(what SAETrainer.save_checkpoint writes beside a mid-training checkpoint)",
            scaling_factor=scale,
            note="SAE.encode/decode IGNORE expected_average_only_in (identity at inference). "
            "latents/recon are the plain SAE.encode/decode outputs; latents_trainer/recon_trainer are what "
            "the trainer computes: encode(x * s), decode(...) / s.",
        )
        out.append(
            {
                "fixture": "saelens/standard-expected-average-unfolded",
                **run(sae, d, exp, {"latents_trainer": lat_t, "recon_trainer": rec_t}),
            }
        )
    except Exception as e:
        out.append(
            {
                "fixture": "saelens/standard-expected-average-unfolded",
                "error": repr(e),
                "traceback": traceback.format_exc(),
            }
        )

    try:
        d = fresh_dir(root, "saelens", "standard-expected-average-folded")
        cfg = StandardSAEConfig(
            d_in=D_IN,
            d_sae=D_SAE,
            apply_b_dec_to_input=True,
            normalize_activations="expected_average_only_in",
        )
        sae = StandardSAE(cfg)
        randomise(sae, 1100)  # same weights as the unfolded fixture
        sae.eval()
        with torch.no_grad():
            lat_t = sae.encode(x * scale)
            rec_t = sae.decode(lat_t) / scale
        sae.fold_activation_norm_scaling_factor(scale)
        sae.save_model(str(d))
        exp = base_expected(
            "standard",
            StandardSAE,
            sae.cfg,
            "sae.fold_activation_norm_scaling_factor(s); sae.save_model(DIR)  (what SAETrainer does at the end)",
            scaling_factor_folded=scale,
            note="same raw weights as standard-expected-average-unfolded; after folding, encode(x)/decode equal "
            "the trainer's encode(x*s) and decode(.)/s of the unfolded one (up to float error)",
        )
        out.append(
            {
                "fixture": "saelens/standard-expected-average-folded",
                **run(
                    sae,
                    d,
                    exp,
                    {"latents_before_fold_scaled_input": lat_t, "recon_before_fold_unscaled": rec_t},
                ),
            }
        )
    except Exception as e:
        out.append(
            {
                "fixture": "saelens/standard-expected-average-folded",
                "error": repr(e),
                "traceback": traceback.format_exc(),
            }
        )

    # BatchTopK: trained as BatchTopKTrainingSAE, saved for inference as JumpReLU with
    # threshold = topk_threshold for every latent.
    try:
        d = fresh_dir(root, "saelens", "batchtopk")
        # topk_threshold_lr=1.0: one update_topk_threshold() call sets the threshold to the
        # minimum positive BatchTopK activation on a calibration batch (the peer's own rule).
        cfg = BatchTopKTrainingSAEConfig(
            d_in=D_IN, d_sae=D_SAE, k=K, apply_b_dec_to_input=True, topk_threshold_lr=1.0
        )
        sae = BatchTopKTrainingSAE(cfg)
        randomise(sae, 1200)
        with torch.no_grad():
            sae.update_topk_threshold(sae.encode(calibration_inputs()))
        thr = float(sae.topk_threshold)
        with torch.no_grad():
            lat_train = sae.encode(x)  # training-time batch top-k (k * n_rows over the batch)
            rec_train = sae.decode(lat_train)
        sae.save_inference_model(str(d))
        back = SAE.load_from_disk(str(d))
        exp = {
            "peer": "saelens",
            "package": "sae-lens",
            "version": ver,
            "architecture": "batchtopk (saved as jumprelu)",
            "class": "sae_lens.saes.batchtopk_sae.BatchTopKTrainingSAE",
            "config": {k: v for k, v in cfg.to_dict().items() if k != "metadata"},
            "save_call": "BatchTopKTrainingSAE.save_inference_model(DIR)",
            "load_call": "sae_lens.SAE.load_from_disk(DIR) -> " + type(back).__name__,
            "encode_call": "loaded.encode(x)  (inference: JumpReLU with threshold = topk_threshold)",
            "decode_call": "loaded.decode(loaded.encode(x))",
            "topk_threshold": thr,
            "topk_threshold_source": "BatchTopKTrainingSAE.update_topk_threshold(encode(calibration batch)) "
            "with topk_threshold_lr=1.0, i.e. the min positive batch-top-k activation; calibration batch = "
            + CALIB_DOC,
            "apply_b_dec_to_input": True,
            "normalize_activations": "none",
            "note": "latents_training_batchtopk/recon_training_batchtopk: the training SAE's own encode "
            "(BatchTopK over the whole 8-row batch, k*8 values kept) for reference only",
        }
        out.append(
            {
                "fixture": "saelens/batchtopk",
                **run(
                    back,
                    d,
                    exp,
                    {"latents_training_batchtopk": lat_train, "recon_training_batchtopk": rec_train},
                ),
            }
        )
    except Exception as e:
        out.append({"fixture": "saelens/batchtopk", "error": repr(e), "traceback": traceback.format_exc()})
    return out


# --------------------------------------------------------------------------- sparsify
def sparsify_fixtures(root: Path) -> list[dict]:
    from sparsify import SparseCoder, SparseCoderConfig
    from sparsify import utils as sp_utils

    ver = version("eai-sparsify")
    x = fixed_inputs()
    out = []
    specs = [
        ("topk", {"activation": "topk"}),
        ("topk-skip-connection", {"activation": "topk", "skip_connection": True}),
        ("groupmax", {"activation": "groupmax"}),
        ("transcoder", {"activation": "topk", "transcode": True}),
    ]
    for i, (name, kw) in enumerate(specs):
        try:
            d = fresh_dir(root, "sparsify", name)
            cfg = SparseCoderConfig(num_latents=D_SAE, k=K, **kw)
            sae = SparseCoder(D_IN, cfg)
            g = gen(2000 + i)
            with torch.no_grad():
                sae.encoder.weight.copy_(rand_like(sae.encoder.weight, g, 1.0 / math.sqrt(D_IN)))
                sae.encoder.bias.copy_(rand_like(sae.encoder.bias, g, 0.3))
                sae.W_dec.copy_(rand_like(sae.W_dec, g, 0.5))
                sae.b_dec.copy_(rand_like(sae.b_dec, g, 0.3))
                if sae.W_skip is not None:
                    sae.W_skip.copy_(rand_like(sae.W_skip, g, 0.1))
            sae.save_to_disk(d)
            sae.eval()
            with torch.no_grad():
                top_acts, top_indices, pre_acts = sae.encode(x)
                rec = sae.decode(top_acts, top_indices)
                fwd = sae(x)
            dense = torch.zeros(N_ROWS, D_SAE).scatter(-1, top_indices, top_acts)
            io = {
                "x": x,
                "top_acts": top_acts,
                "top_indices": top_indices,
                "pre_acts": pre_acts,
                "latents": dense,
                "recon": rec,
                "forward": fwd.sae_out,
            }
            back = SparseCoder.load_from_disk(d)
            with torch.no_grad():
                a2, i2, _ = back.encode(x)
                r2 = back.decode(a2, i2)
            exp = {
                "peer": "sparsify",
                "package": "eai-sparsify",
                "version": ver,
                "architecture": "topk" if kw["activation"] == "topk" else "groupmax",
                "variant": name,
                "class": "sparsify.SparseCoder (alias sparsify.Sae)",
                "config": {**cfg.to_dict(), "d_in": D_IN},
                "save_call": "sae.save_to_disk(DIR)",
                "load_call": "sparsify.SparseCoder.load_from_disk(DIR)",
                "encode_call": "top_acts, top_indices, pre_acts = sae.encode(x)",
                "decode_call": "sae.decode(top_acts, top_indices)",
                "forward_call": "sae(x).sae_out  (adds x @ W_skip.T when skip_connection)",
                "decoder_impl": getattr(sp_utils.decoder_impl, "__name__", str(sp_utils.decoder_impl)),
                "latents_note": "latents = zeros(8, num_latents).scatter(-1, top_indices, top_acts) (derived here, "
                "sparsify returns the sparse pair); top_indices is unsorted (topk sorted=False)",
                "normalize_activations": "none (sparsify has no input normalisation)",
                "latent_stats": tensor_stats(dense),
                "reload_check": {
                    "top_acts_max_abs_diff": float((a2 - top_acts).abs().max()),
                    "indices_equal": bool(torch.equal(i2, top_indices)),
                    "recon_max_abs_diff": float((r2 - rec).abs().max()),
                },
            }
            if name == "transcoder":
                exp["note"] = (
                    "transcoder: encode does NOT subtract b_dec; it maps a module's input to its output. "
                    "Recorded only as an example cliplens does not support as an autoencoder."
                )
            out.append({"fixture": f"sparsify/{name}", **finish(d, io, exp)})
        except Exception as e:
            out.append({"fixture": f"sparsify/{name}", "error": repr(e), "traceback": traceback.format_exc()})
    return out


# --------------------------------------------------------------------------- saev
def saev_fixtures(root: Path) -> list[dict]:
    from saev import config as saev_config
    from saev import nn as saev_nn

    ver = version("saev")
    x = fixed_inputs()
    out = []
    try:
        d = fresh_dir(root, "saev", "relu")
        cfg = saev_config.SparseAutoencoder(d_vit=D_IN, exp_factor=D_SAE // D_IN, seed=0)
        sae = saev_nn.SparseAutoencoder(cfg)
        g = gen(3000)
        with torch.no_grad():
            sae.W_enc.copy_(rand_like(sae.W_enc, g, 1.0 / math.sqrt(D_IN)))
            sae.b_enc.copy_(rand_like(sae.b_enc, g, 0.3))
            sae.W_dec.copy_(rand_like(sae.W_dec, g, 0.5))
            sae.b_dec.copy_(rand_like(sae.b_dec, g, 0.3))
        saev_nn.dump(str(d / "sae.pt"), sae)
        sae.eval()
        with torch.no_grad():
            x_hat, f_x, _loss = sae(x)
            rec = sae.decode(f_x)
        back = saev_nn.load(str(d / "sae.pt"))
        with torch.no_grad():
            x_hat2, f_x2, _ = back(x)
        with open(d / "sae.pt", "rb") as fd:
            header = fd.readline().decode()
        exp = {
            "peer": "saev",
            "package": "saev",
            "version": ver,
            "architecture": "relu",
            "class": "saev.nn.SparseAutoencoder",
            "config": json.loads(header),
            "save_call": "saev.nn.dump(DIR/'sae.pt', sae)  (JSON header line + torch.save(state_dict))",
            "load_call": "saev.nn.load(DIR/'sae.pt')",
            "encode_call": "_, f_x, _ = sae(x)  (saev 0.1.0 has no encode(); f_x is the latent)",
            "decode_call": "sae.decode(f_x)",
            "forward_call": "x_hat, f_x, _loss = sae(x)",
            "normalize_activations": "none in the checkpoint; saev normalises activations in its data loader "
            "((act - act_mean) / scalar, config DataLoad.scale_mean/scale_norm), not stored in sae.pt",
            "apply_b_dec_to_input": True,
            "latent_stats": tensor_stats(f_x),
            "reload_check": {
                "latents_max_abs_diff": float((f_x2 - f_x).abs().max()),
                "recon_max_abs_diff": float((x_hat2 - x_hat).abs().max()),
            },
            "forward_equals_decode_encode": bool(torch.equal(x_hat, rec)),
        }
        out.append({"fixture": "saev/relu", **finish(d, {"x": x, "latents": f_x, "recon": rec}, exp)})
    except Exception as e:
        out.append({"fixture": "saev/relu", "error": repr(e), "traceback": traceback.format_exc()})
    return out


# --------------------------------------------------------------------------- overcomplete
MPL_SHIM = None


def _overcomplete_import_shim() -> None:
    """overcomplete 0.3.0's package __init__ imports its plotting helpers, which call
    matplotlib.cm.get_cmap (removed in matplotlib 3.9); saev needs matplotlib>=3.9.2.
    Restore that one plotting alias so the package imports; SAE code is untouched."""
    global MPL_SHIM
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib
    import matplotlib.cm

    if not hasattr(matplotlib.cm, "get_cmap"):

        def get_cmap(name=None, lut=None):
            cmap = matplotlib.colormaps[name or matplotlib.rcParams["image.cmap"]]
            return cmap.resampled(lut) if lut is not None else cmap

        matplotlib.cm.get_cmap = get_cmap
        MPL_SHIM = (
            f"matplotlib {matplotlib.__version__} lacks matplotlib.cm.get_cmap, which overcomplete's "
            "visualization module calls at import; the writer restored it as an alias of "
            "matplotlib.colormaps[name] before importing overcomplete (SAE code untouched)"
        )


def overcomplete_fixtures(root: Path) -> list[dict]:
    _overcomplete_import_shim()
    from overcomplete.sae import SAE, BatchTopKSAE, JumpSAE, TopKSAE

    ver = version("overcomplete")
    x = fixed_inputs()
    out = []

    def randomise(model, g, multiplier: float | None = None):
        with torch.no_grad():
            lin = model.encoder.final_block[0]
            lin.weight.copy_(rand_like(lin.weight, g, 1.0 / math.sqrt(D_IN)))
            lin.bias.copy_(rand_like(lin.bias, g, 0.3))
            model.dictionary._weights.copy_(rand_like(model.dictionary._weights, g, 0.5))
            if multiplier is not None:
                model.dictionary.multiplier.copy_(torch.tensor(multiplier))

    specs = [
        ("relu", SAE, {}, None),
        ("topk", TopKSAE, {"top_k": K}, None),
        ("topk-multiplier", TopKSAE, {"top_k": K, "dictionary_params": {"use_multiplier": True}}, 0.4),
        ("batchtopk", BatchTopKSAE, {"top_k": K * N_ROWS}, None),
        ("jumprelu", JumpSAE, {}, None),
    ]
    for i, (name, cls, kw, mult) in enumerate(specs):
        try:
            d = fresh_dir(root, "overcomplete", name)
            model = cls(D_IN, D_SAE, **kw)
            g = gen(4000 + i)
            randomise(model, g, mult)
            extra_exp: dict = {}
            extra_io: dict = {}
            if cls is JumpSAE:
                with torch.no_grad():
                    thr = rand_uniform((D_SAE,), g, 0.2, 1.2)
                    model.thresholds.copy_(torch.log(thr))
                extra_exp["thresholds_note"] = (
                    "state_dict 'thresholds' holds LOG thresholds; effective threshold "
                    "= exp(thresholds), drawn uniform(0.2, 1.2)"
                )
            if cls is BatchTopKSAE:
                # learn the running threshold with the peer's own training-mode encode on a
                # different fixed batch (first call sets running_threshold = current threshold)
                calib = calibration_inputs()
                model.train()
                with torch.no_grad():
                    model.encode(calib)
                extra_exp["running_threshold"] = float(model.running_threshold)
                extra_exp["running_threshold_note"] = (
                    "running_threshold is a plain attribute, NOT in state_dict: torch.save(model.state_dict()) "
                    "loses it. It was set by one training-mode encode on a calibration batch "
                    f"(default_rng({INPUT_SEED + 1}), same scale/shift as x). Also stored in io.safetensors."
                )
                extra_io["running_threshold"] = torch.tensor([float(model.running_threshold)])
            # eval(): DictionaryLayer.train(False) calls get_dictionary() while still in training mode,
            # which L2-normalises _weights IN PLACE, then caches _fused_dictionary.
            model.eval()
            torch.save(model.state_dict(), d / "model.pt")
            with torch.no_grad():
                pre, codes = model.encode(x)
                rec = model.decode(codes)
                _fpre, _fcodes, frec = model(x)
            sd = model.state_dict()
            exp = {
                "peer": "overcomplete",
                "package": "overcomplete",
                "version": ver,
                "architecture": {
                    "relu": "relu",
                    "topk": "topk",
                    "topk-multiplier": "topk",
                    "batchtopk": "batchtopk",
                    "jumprelu": "jumprelu",
                }[name],
                "variant": name,
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "constructor": f"{cls.__name__}(input_shape={D_IN}, nb_concepts={D_SAE}, "
                + ", ".join(f"{k}={v!r}" for k, v in kw.items())
                + ")",
                "encoder_module": "default 'linear' = MLPEncoder(nb_blocks=0, norm_layer=Identity): Linear + ReLU",
                "dictionary_normalization": "l2 (default)",
                "dictionary_multiplier": float(model.dictionary.multiplier),
                "save_call": "torch.save(model.state_dict(), DIR/'model.pt')  (overcomplete has no save function; "
                "called after model.eval())",
                "load_call": f"m = {cls.__name__}(...same args...); m.load_state_dict(torch.load(DIR/'model.pt')); m.eval()",
                "encode_call": "pre_codes, codes = model.encode(x)  (eval mode)",
                "decode_call": "model.decode(codes)",
                "forward_call": "pre_codes, codes, x_hat = model(x)",
                "state_dict": {k: list(v.shape) for k, v in sd.items()},
                "normalize_activations": "none (overcomplete has no input normalisation)",
                "latent_stats": tensor_stats(codes),
                "forward_equals_decode_encode": bool(torch.equal(frec, rec)),
                "import_shim": MPL_SHIM,
                **extra_exp,
            }
            # reload check with the peer's class
            back = cls(D_IN, D_SAE, **kw)
            back.load_state_dict(torch.load(d / "model.pt", weights_only=True))
            if cls is BatchTopKSAE:
                back.running_threshold = model.running_threshold
            back.eval()
            with torch.no_grad():
                _, c2 = back.encode(x)
                r2 = back.decode(c2)
            exp["reload_check"] = {
                "latents_max_abs_diff": float((c2 - codes).abs().max()),
                "recon_max_abs_diff": float((r2 - rec).abs().max()),
            }
            io = {"x": x, "pre_codes": pre, "latents": codes, "recon": rec} | extra_io
            if not torch.equal(frec, rec):
                io["forward"] = frec
            out.append({"fixture": f"overcomplete/{name}", **finish(d, io, exp)})
        except Exception as e:
            out.append(
                {"fixture": f"overcomplete/{name}", "error": repr(e), "traceback": traceback.format_exc()}
            )
    return out


WRITERS = {
    "saelens": saelens_fixtures,
    "sparsify": sparsify_fixtures,
    "saev": saev_fixtures,
    "overcomplete": overcomplete_fixtures,
}
DISTS = {"saelens": "sae-lens", "sparsify": "eai-sparsify", "saev": "saev", "overcomplete": "overcomplete"}


# --------------------------------------------------------------------------- serve set
# A second, separate set at the demo CLIP model's width, so the fixtures can be served:
# one SAE per peer, d_in=128, d_sae=256, k=8, written to <serve_root>/<peer>/.  Its own
# seeds and inputs; the 16-wide fixtures above are not touched by this code.
SERVE_D_IN = 128
SERVE_D_SAE = 256
SERVE_K = 8
SERVE_INPUT_SEED = 20270

SERVE_INPUTS_DOC = {
    "x": f"numpy.random.default_rng({SERVE_INPUT_SEED}).standard_normal(({N_ROWS}, {SERVE_D_IN})) "
    f"as float32 * {INPUT_SCALE} + {INPUT_SHIFT}",
}


def serve_inputs() -> torch.Tensor:
    """x: (8, 128) float32 from numpy's PCG64."""
    rng = np.random.default_rng(SERVE_INPUT_SEED)
    x = rng.standard_normal((N_ROWS, SERVE_D_IN)).astype(np.float32) * INPUT_SCALE + INPUT_SHIFT
    return torch.from_numpy(x.astype(np.float32))


def serve_dir(root: Path, peer: str) -> Path:
    d = root / peer
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def serve_common(exp: dict) -> dict:
    exp["set"] = "serve"
    exp["sizes"] = {"d_in": SERVE_D_IN, "d_sae": SERVE_D_SAE, "n_rows": N_ROWS}
    exp["inputs"] = SERVE_INPUTS_DOC
    exp["init"] = (
        f"W_enc ~ N(0, 1/{SERVE_D_IN}), W_dec ~ N(0, 0.25), biases ~ N(0, 0.09); "
        f"torch.Generator seed {exp.get('seed')}"
    )
    return exp


def serve_saelens(root: Path) -> list[dict]:
    import sae_lens
    from sae_lens import SAE
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    x = serve_inputs()
    name = "serve/saelens"
    try:
        d = serve_dir(root, "saelens")
        cfg = TopKSAEConfig(
            d_in=SERVE_D_IN,
            d_sae=SERVE_D_SAE,
            k=SERVE_K,
            apply_b_dec_to_input=True,
            normalize_activations="none",
        )
        sae = TopKSAE(cfg)
        seed = 5000
        g = gen(seed)
        with torch.no_grad():
            for pname, p in sorted(sae.named_parameters()):
                if pname == "W_enc":
                    p.copy_(rand_like(p, g, 1.0 / math.sqrt(SERVE_D_IN)))
                elif pname == "W_dec":
                    p.copy_(rand_like(p, g, 0.5))
                else:  # b_enc, b_dec
                    p.copy_(rand_like(p, g, 0.3))
        sae.save_model(str(d))
        sae.eval()
        with torch.no_grad():
            lat = sae.encode(x)
            rec = sae.decode(lat)
            fwd = sae(x)
        back = SAE.load_from_disk(str(d))
        back.eval()
        with torch.no_grad():
            lat2 = back.encode(x)
            rec2 = back.decode(lat2)
        io = {"x": x, "latents": lat, "recon": rec}
        if not torch.equal(fwd, rec):
            io["forward"] = fwd
        exp = serve_common(
            {
                "peer": "saelens",
                "package": "sae-lens",
                "version": version("sae-lens"),
                "module_version": getattr(sae_lens, "__version__", None),
                "architecture": cfg.architecture(),
                "class": f"{TopKSAE.__module__}.{TopKSAE.__qualname__}",
                "config": {k: v for k, v in cfg.to_dict().items() if k != "metadata"},
                "save_call": "sae.save_model(DIR)",
                "load_call": "sae_lens.SAE.load_from_disk(DIR)",
                "encode_call": "sae.encode(x)  (eval mode, torch.no_grad)",
                "decode_call": "sae.decode(sae.encode(x))",
                "forward_call": "sae(x)",
                "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
                "normalize_activations": cfg.normalize_activations,
                "k": SERVE_K,
                "seed": seed,
                "forward_equals_decode_encode": bool(torch.equal(fwd, rec)),
                "latent_stats": tensor_stats(lat),
                "reload_check": {
                    "loader": "sae_lens.SAE.load_from_disk",
                    "loaded_class": type(back).__name__,
                    "latents_max_abs_diff": float((lat2 - lat).abs().max()),
                    "recon_max_abs_diff": float((rec2 - rec).abs().max()),
                },
            }
        )
        return [{"fixture": name, **finish(d, io, exp)}]
    except Exception as e:
        return [{"fixture": name, "error": repr(e), "traceback": traceback.format_exc()}]


def serve_sparsify(root: Path) -> list[dict]:
    from sparsify import SparseCoder, SparseCoderConfig
    from sparsify import utils as sp_utils

    x = serve_inputs()
    name = "serve/sparsify"
    try:
        d = serve_dir(root, "sparsify")
        cfg = SparseCoderConfig(num_latents=SERVE_D_SAE, k=SERVE_K, activation="topk")
        sae = SparseCoder(SERVE_D_IN, cfg)
        seed = 5100
        g = gen(seed)
        with torch.no_grad():
            sae.encoder.weight.copy_(rand_like(sae.encoder.weight, g, 1.0 / math.sqrt(SERVE_D_IN)))
            sae.encoder.bias.copy_(rand_like(sae.encoder.bias, g, 0.3))
            sae.W_dec.copy_(rand_like(sae.W_dec, g, 0.5))
            sae.b_dec.copy_(rand_like(sae.b_dec, g, 0.3))
        sae.save_to_disk(d)
        sae.eval()
        with torch.no_grad():
            top_acts, top_indices, pre_acts = sae.encode(x)
            rec = sae.decode(top_acts, top_indices)
            fwd = sae(x)
        dense = torch.zeros(N_ROWS, SERVE_D_SAE).scatter(-1, top_indices, top_acts)
        back = SparseCoder.load_from_disk(d)
        back.eval()
        with torch.no_grad():
            a2, i2, _ = back.encode(x)
            r2 = back.decode(a2, i2)
        io = {
            "x": x,
            "top_acts": top_acts,
            "top_indices": top_indices,
            "pre_acts": pre_acts,
            "latents": dense,
            "recon": rec,
            "forward": fwd.sae_out,
        }
        exp = serve_common(
            {
                "peer": "sparsify",
                "package": "eai-sparsify",
                "version": version("eai-sparsify"),
                "architecture": "topk",
                "class": "sparsify.SparseCoder (alias sparsify.Sae)",
                "config": {**cfg.to_dict(), "d_in": SERVE_D_IN},
                "save_call": "sae.save_to_disk(DIR)",
                "load_call": "sparsify.SparseCoder.load_from_disk(DIR)",
                "encode_call": "top_acts, top_indices, pre_acts = sae.encode(x)",
                "decode_call": "sae.decode(top_acts, top_indices)",
                "forward_call": "sae(x).sae_out",
                "decoder_impl": getattr(sp_utils.decoder_impl, "__name__", str(sp_utils.decoder_impl)),
                "latents_note": f"latents = zeros({N_ROWS}, num_latents).scatter(-1, top_indices, top_acts) "
                "(derived here, sparsify returns the sparse pair); top_indices is unsorted (topk sorted=False)",
                "normalize_activations": "none (sparsify has no input normalisation)",
                "k": SERVE_K,
                "seed": seed,
                "forward_equals_decode_encode": bool(torch.equal(fwd.sae_out, rec)),
                "latent_stats": tensor_stats(dense),
                "reload_check": {
                    "loader": "sparsify.SparseCoder.load_from_disk",
                    "top_acts_max_abs_diff": float((a2 - top_acts).abs().max()),
                    "indices_equal": bool(torch.equal(i2, top_indices)),
                    "recon_max_abs_diff": float((r2 - rec).abs().max()),
                },
            }
        )
        return [{"fixture": name, **finish(d, io, exp)}]
    except Exception as e:
        return [{"fixture": name, "error": repr(e), "traceback": traceback.format_exc()}]


def serve_saev(root: Path) -> list[dict]:
    from saev import config as saev_config
    from saev import nn as saev_nn

    x = serve_inputs()
    name = "serve/saev"
    try:
        d = serve_dir(root, "saev")
        cfg = saev_config.SparseAutoencoder(d_vit=SERVE_D_IN, exp_factor=SERVE_D_SAE // SERVE_D_IN, seed=0)
        sae = saev_nn.SparseAutoencoder(cfg)
        seed = 5200
        g = gen(seed)
        with torch.no_grad():
            sae.W_enc.copy_(rand_like(sae.W_enc, g, 1.0 / math.sqrt(SERVE_D_IN)))
            sae.b_enc.copy_(rand_like(sae.b_enc, g, 0.3))
            sae.W_dec.copy_(rand_like(sae.W_dec, g, 0.5))
            sae.b_dec.copy_(rand_like(sae.b_dec, g, 0.3))
        saev_nn.dump(str(d / "sae.pt"), sae)
        sae.eval()
        with torch.no_grad():
            x_hat, f_x, _loss = sae(x)
            rec = sae.decode(f_x)
        back = saev_nn.load(str(d / "sae.pt"))
        back.eval()
        with torch.no_grad():
            x_hat2, f_x2, _ = back(x)
        with open(d / "sae.pt", "rb") as fd:
            header = fd.readline().decode()
        exp = serve_common(
            {
                "peer": "saev",
                "package": "saev",
                "version": version("saev"),
                "architecture": "relu",
                "class": "saev.nn.SparseAutoencoder",
                "config": json.loads(header),
                "save_call": "saev.nn.dump(DIR/'sae.pt', sae)  (JSON header line + torch.save(state_dict))",
                "load_call": "saev.nn.load(DIR/'sae.pt')",
                "encode_call": "_, f_x, _ = sae(x)  (saev 0.1.0 has no encode(); f_x is the latent)",
                "decode_call": "sae.decode(f_x)",
                "forward_call": "x_hat, f_x, _loss = sae(x)",
                "normalize_activations": "none in the checkpoint; saev normalises activations in its data loader "
                "((act - act_mean) / scalar), not stored in sae.pt",
                "apply_b_dec_to_input": True,
                "seed": seed,
                "latent_stats": tensor_stats(f_x),
                "reload_check": {
                    "loader": "saev.nn.load",
                    "latents_max_abs_diff": float((f_x2 - f_x).abs().max()),
                    "recon_max_abs_diff": float((x_hat2 - x_hat).abs().max()),
                },
                "forward_equals_decode_encode": bool(torch.equal(x_hat, rec)),
            }
        )
        return [{"fixture": name, **finish(d, {"x": x, "latents": f_x, "recon": rec}, exp)}]
    except Exception as e:
        return [{"fixture": name, "error": repr(e), "traceback": traceback.format_exc()}]


def serve_overcomplete(root: Path) -> list[dict]:
    _overcomplete_import_shim()
    from overcomplete.sae import TopKSAE

    x = serve_inputs()
    name = "serve/overcomplete"
    try:
        d = serve_dir(root, "overcomplete")
        model = TopKSAE(SERVE_D_IN, SERVE_D_SAE, top_k=SERVE_K)
        seed = 5300
        g = gen(seed)
        with torch.no_grad():
            lin = model.encoder.final_block[0]
            lin.weight.copy_(rand_like(lin.weight, g, 1.0 / math.sqrt(SERVE_D_IN)))
            lin.bias.copy_(rand_like(lin.bias, g, 0.3))
            model.dictionary._weights.copy_(rand_like(model.dictionary._weights, g, 0.5))
        model.eval()  # L2-normalises _weights in place, then caches the dictionary
        torch.save(model.state_dict(), d / "model.pt")
        with torch.no_grad():
            pre, codes = model.encode(x)
            rec = model.decode(codes)
            _fpre, _fcodes, frec = model(x)
        back = TopKSAE(SERVE_D_IN, SERVE_D_SAE, top_k=SERVE_K)
        back.load_state_dict(torch.load(d / "model.pt", weights_only=True))
        back.eval()
        with torch.no_grad():
            _, c2 = back.encode(x)
            r2 = back.decode(c2)
        sd = model.state_dict()
        exp = serve_common(
            {
                "peer": "overcomplete",
                "package": "overcomplete",
                "version": version("overcomplete"),
                "architecture": "topk",
                "class": f"{TopKSAE.__module__}.{TopKSAE.__qualname__}",
                "constructor": f"TopKSAE(input_shape={SERVE_D_IN}, nb_concepts={SERVE_D_SAE}, top_k={SERVE_K})",
                "top_k": SERVE_K,
                "k": SERVE_K,
                "k_note": "model.pt (a bare state_dict) does not hold k; it is recorded here",
                "encoder_module": "default 'linear' = MLPEncoder(nb_blocks=0, norm_layer=Identity): Linear + ReLU",
                "dictionary_normalization": "l2 (default)",
                "dictionary_multiplier": float(model.dictionary.multiplier),
                "save_call": "torch.save(model.state_dict(), DIR/'model.pt')  (overcomplete has no save function; "
                "called after model.eval())",
                "load_call": f"m = TopKSAE({SERVE_D_IN}, {SERVE_D_SAE}, top_k={SERVE_K}); "
                "m.load_state_dict(torch.load(DIR/'model.pt')); m.eval()",
                "encode_call": "pre_codes, codes = model.encode(x)  (eval mode)",
                "decode_call": "model.decode(codes)",
                "forward_call": "pre_codes, codes, x_hat = model(x)",
                "state_dict": {k: list(v.shape) for k, v in sd.items()},
                "normalize_activations": "none (overcomplete has no input normalisation)",
                "seed": seed,
                "latent_stats": tensor_stats(codes),
                "forward_equals_decode_encode": bool(torch.equal(frec, rec)),
                "import_shim": MPL_SHIM,
                "reload_check": {
                    "loader": "TopKSAE(...).load_state_dict(torch.load(DIR/'model.pt'))",
                    "latents_max_abs_diff": float((c2 - codes).abs().max()),
                    "recon_max_abs_diff": float((r2 - rec).abs().max()),
                },
            }
        )
        io = {"x": x, "pre_codes": pre, "latents": codes, "recon": rec}
        if not torch.equal(frec, rec):
            io["forward"] = frec
        return [{"fixture": name, **finish(d, io, exp)}]
    except Exception as e:
        return [{"fixture": name, "error": repr(e), "traceback": traceback.format_exc()}]


SERVE_WRITERS = {
    "saelens": serve_saelens,
    "sparsify": serve_sparsify,
    "saev": serve_saev,
    "overcomplete": serve_overcomplete,
}


# --------------------------------------------------------------------------- export check
def check_export(export_dir: Path) -> dict:
    """Load a SAELens-format directory (cfg.json + sae_weights.safetensors) with
    SAELens's own loader and write its outputs on the fixture inputs next to it."""
    from sae_lens import SAE

    x = fixed_inputs()
    sae = SAE.load_from_disk(str(export_dir))
    sae.eval()
    with torch.no_grad():
        lat = sae.encode(x)
        rec = sae.decode(lat)
        fwd = sae(x)
    out_file = export_dir / "saelens_readback.safetensors"
    save_file(
        {"x": x, "latents": lat.contiguous(), "recon": rec.contiguous(), "forward": fwd.contiguous()},
        str(out_file),
    )
    res = {
        "export_dir": str(export_dir),
        "sae_lens_version": version("sae-lens"),
        "loader": "sae_lens.SAE.load_from_disk",
        "loaded_class": type(sae).__name__,
        "architecture": sae.cfg.architecture(),
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "apply_b_dec_to_input": sae.cfg.apply_b_dec_to_input,
        "normalize_activations": sae.cfg.normalize_activations,
        "inputs": INPUTS_DOC,
        "outputs_file": str(out_file),
        "latent_stats": tensor_stats(lat),
    }
    (export_dir / "saelens_readback.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    return res


def main(argv: list[str]) -> int:
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True, warn_only=True)
    cmd = argv[1]
    if cmd in ("write", "write-serve"):
        peer, root, result = argv[2], Path(argv[3]), Path(argv[4])
        writers = WRITERS if cmd == "write" else SERVE_WRITERS
        res = {
            "peer": peer,
            "package": DISTS[peer],
            "version": version(DISTS[peer]),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "safetensors": version("safetensors"),
        }
        try:
            res["fixtures"] = writers[peer](root)
        except Exception as e:
            res["error"] = repr(e)
            res["traceback"] = traceback.format_exc()
        result.write_text(json.dumps(res, indent=2) + "\n")
        return 0
    if cmd == "check-export":
        d, result = Path(argv[2]), Path(argv[3])
        try:
            res = check_export(d)
        except Exception as e:
            res = {"export_dir": str(d), "error": repr(e), "traceback": traceback.format_exc()}
        result.write_text(json.dumps(res, indent=2) + "\n")
        return 0 if "error" not in res else 1
    print(f"unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
