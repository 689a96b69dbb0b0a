"""A float64 reference of SAELens's inference math (written from sae_lens/saes/*.py, 6.x) and a writer
of SAE directories in SAELens's on-disk layout from random tensors, for the SAE import/export tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

D_IN, D_SAE, K = 16, 32, 4


def saelens_encode(
    cfg: dict[str, Any], t: dict[str, torch.Tensor], x: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    W_enc, b_enc, W_dec, b_dec = (t[n].double() for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    sae_in = x.double() * scale - b_dec * float(cfg.get("apply_b_dec_to_input", True))
    pre = sae_in @ W_enc + b_enc
    arch = cfg["architecture"]
    if arch == "standard":
        return pre.relu()
    if arch == "topk":
        if cfg.get("rescale_acts_by_decoder_norm"):
            pre = pre * W_dec.norm(dim=-1)
        values, indices = pre.topk(cfg["k"], dim=-1)
        return torch.zeros_like(pre).scatter(-1, indices, values.relu())
    if arch == "jumprelu":
        return pre.relu() * (pre > t["threshold"].double())
    raise AssertionError(arch)


def saelens_decode(
    cfg: dict[str, Any], t: dict[str, torch.Tensor], z: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    W_dec = t["W_dec"].double()
    if cfg.get("rescale_acts_by_decoder_norm"):
        z = z / W_dec.norm(dim=-1)
    return (z @ W_dec + t["b_dec"].double()) / scale


def write_saelens(
    directory: Path, cfg: dict[str, Any], seed: int = 0, thresholds: tuple[float, float] = (0.1, 0.8)
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tensors = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g) / D_IN**0.5,
        "b_enc": torch.randn(D_SAE, generator=g) * 0.3,
        "W_dec": torch.randn(D_SAE, D_IN, generator=g) * 0.5,  # rows far from unit norm
        "b_dec": torch.randn(D_IN, generator=g) * 0.3,
    }
    if cfg.get("architecture") == "jumprelu":
        lo, hi = thresholds
        tensors["threshold"] = lo + (hi - lo) * torch.rand(D_SAE, generator=g)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "sae_weights.safetensors"))
    (directory / "cfg.json").write_text(json.dumps({"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", **cfg}))
    return tensors


def inputs(seed: int = 1, n: int = 64) -> torch.Tensor:
    return torch.randn(n, D_IN, generator=torch.Generator().manual_seed(seed)) * 2.0


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual.double(), expected.double(), rtol=1e-5, atol=1e-5)


CASES = {
    "standard": {"architecture": "standard", "apply_b_dec_to_input": True},
    "standard-no-bdec": {"architecture": "standard", "apply_b_dec_to_input": False},
    "topk": {"architecture": "topk", "k": K, "apply_b_dec_to_input": True},
    "topk-rescale-no-bdec": {
        "architecture": "topk",
        "k": K,
        "apply_b_dec_to_input": False,
        "rescale_acts_by_decoder_norm": True,
    },
    "jumprelu": {"architecture": "jumprelu", "apply_b_dec_to_input": True},
    "jumprelu-no-bdec": {"architecture": "jumprelu", "apply_b_dec_to_input": False},
    "pre-6-topk": {
        "activation_fn": "topk",
        "activation_fn_kwargs": {"k": K},
        "hook_point": "blocks.3.hook_resid_post",
    },
}
