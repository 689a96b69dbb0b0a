"""SAE invariants: sparsity patterns, decoder norms, batch independence, prefixes, checkpoints, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cliplens.core.errors import InvalidInputError, ShapeMismatchError, UnknownArchitectureError
from cliplens.core.models import LoadedClip
from cliplens.core.sae import ARCHITECTURES, MatryoshkaSae, Sae, build_sae, load_sae, make_config, save_sae
from cliplens.core.sae.train import TensorBatches, TrainConfig, evaluate_sae, train_sae
from cliplens.core.zeroshot import check_sae_fits

D_IN, D_SAE = 32, 256
ARCH_FIELDS: dict[str, dict[str, object]] = {
    "relu": {"l1_coeff": 3e-3},
    "topk": {"k": 4, "aux_k": 32},
    "batchtopk": {"k": 4},
    "jumprelu": {},
    "matryoshka": {"k": 4, "prefixes": (16, 64, 256)},
}


def planted_data(rows: int = 4000, seed: int = 0) -> torch.Tensor:
    """Rows that are sparse (4 of 256) non-negative combinations of unit directions, with a mean offset."""
    g = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(D_SAE, D_IN, generator=g), dim=-1)
    codes = torch.zeros(rows, D_SAE)
    codes.scatter_(
        1, torch.randint(0, D_SAE, (rows, 4), generator=g), torch.rand(rows, 4, generator=g) * 3 + 0.5
    )
    return codes @ directions + 0.5


def trained(arch: str, epochs: int = 4) -> tuple[Sae, torch.Tensor]:
    torch.manual_seed(0)
    data = planted_data()
    sae = build_sae(make_config(arch, d_in=D_IN, d_sae=D_SAE, **ARCH_FIELDS[arch]))
    train_sae(
        sae,
        TensorBatches(data, 128),
        TrainConfig(epochs=epochs, warmup_steps=10, progress=False, device="cpu"),
    )
    return sae, data


def test_registry_covers_every_architecture() -> None:
    assert set(ARCHITECTURES) == set(ARCH_FIELDS)


def test_topk_has_exactly_k_nonzeros() -> None:
    sae = build_sae(make_config("topk", d_in=D_IN, d_sae=D_SAE, k=7))
    z = sae.encode(torch.randn(64, D_IN))
    assert torch.equal((z != 0).sum(-1), torch.full((64,), 7))


@pytest.mark.parametrize("arch", list(ARCH_FIELDS))
def test_decoder_rows_are_unit_norm_after_every_step(arch: str) -> None:
    sae = build_sae(make_config(arch, d_in=D_IN, d_sae=D_SAE, **ARCH_FIELDS[arch]))
    norms = []
    data = planted_data(rows=512)
    for _ in range(3):
        train_sae(
            sae, TensorBatches(data, 128), TrainConfig(epochs=1, warmup_steps=1, progress=False, device="cpu")
        )
        norms.append(sae.W_dec.norm(dim=-1))
    for n in norms:
        assert torch.allclose(n, torch.ones(D_SAE), atol=1e-5)


@pytest.mark.parametrize("arch", list(ARCH_FIELDS))
def test_training_reconstructs_planted_data(arch: str) -> None:
    sae, data = trained(arch)
    metrics = evaluate_sae(sae, TensorBatches(data, 512, shuffle=False))
    assert metrics.r2 > 0.4, metrics  # a random SAE scores below 0 here
    assert metrics.rows == data.shape[0]


def test_batchtopk_inference_is_independent_of_batch() -> None:
    sae, data = trained("batchtopk", epochs=2)
    assert float(sae.threshold) > 0
    alone = sae.encode(data[:1])
    with_others = sae.encode(torch.cat([data[:1], data[100:300] * 5.0]))[:1]
    # Same active latents and values (up to the float rounding of a different matmul shape).
    assert torch.equal(alone != 0, with_others != 0)
    assert torch.allclose(alone, with_others, atol=1e-5)
    sae.train()
    trained_mode = sae.encode(torch.cat([data[:1], data[100:300] * 5.0]))[:1]
    assert not torch.equal(alone != 0, trained_mode != 0)  # training mode really is batch-level top-k


def test_matryoshka_prefixes_reconstruct() -> None:
    sae, data = trained("matryoshka")
    assert isinstance(sae, MatryoshkaSae)
    with torch.no_grad():
        z = sae.encode(data)
        errors = [
            float((sae.decode_prefix(z, size) - data).pow(2).mean().detach()) for size in sae.cfg.prefixes
        ]
        baseline = float((data - data.mean(0)).pow(2).mean())
    assert errors == sorted(errors, reverse=True)
    assert errors[0] < baseline  # the first 16 latents alone already explain part of the variance
    assert errors[-1] == pytest.approx(float((sae(data) - data).pow(2).mean().detach()), rel=1e-4)


def test_auxk_gives_dead_latents_a_gradient() -> None:
    sae = build_sae(make_config("topk", d_in=D_IN, d_sae=D_SAE, k=4, aux_k=16))
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[128:] = True
    out = sae.loss(planted_data(rows=64), dead=dead)
    assert float(out.aux) > 0
    out.total.backward()
    assert sae.W_enc.grad is not None
    never_active = ~(out.z != 0).any(0) & dead
    assert sae.W_enc.grad[:, never_active].abs().sum() > 0
    no_aux = sae.loss(planted_data(rows=64), dead=None)
    assert float(no_aux.aux) == 0.0


@pytest.mark.parametrize("arch", list(ARCH_FIELDS))
def test_save_load_round_trip_is_exact(arch: str, tmp_path: Path) -> None:
    sae, data = trained(arch, epochs=1)
    save_sae(sae, tmp_path / arch, metrics={"r2": 0.5})
    loaded = load_sae(tmp_path / arch)
    assert loaded.sae.cfg == sae.cfg
    assert loaded.metrics == {"r2": 0.5}
    for name, tensor in sae.state_dict().items():
        assert torch.equal(tensor, loaded.sae.state_dict()[name]), name
    with torch.no_grad():
        assert torch.equal(loaded.sae(data[:50]), sae.eval()(data[:50]))
    document = (tmp_path / arch / "cfg.json").read_text()
    assert '"site": "final"' in document and '"expansion"' in document


@pytest.mark.parametrize(
    ("arch", "fields", "expected"),
    [
        ("relu", {"l1_coeff": 3e-3, "aux_k": 4}, {"l1_coeff": 3e-3}),
        ("topk", {"k": 4, "aux_k": 32}, {"k": 4.0, "aux_k": 32.0}),
        ("batchtopk", {"k": 4}, {"k": 4.0, "aux_k": 0.0, "threshold_momentum": 0.01}),
        ("jumprelu", {"l0_coeff": 0.5}, {"l0_coeff": 0.5, "bandwidth": 0.05, "init_threshold": 0.05}),
        ("matryoshka", {"k": 4, "prefixes": (16, 64, 256)}, {"k": 4.0, "aux_k": 0.0, "threshold_momentum": 0.01}),
    ],
)  # fmt: skip
def test_hyperparameters_are_the_numeric_fields_beyond_the_shared_ones(
    arch: str, fields: dict[str, object], expected: dict[str, float]
) -> None:
    cfg = make_config(arch, d_in=D_IN, d_sae=D_SAE, model_id="m", site="resid:1", **fields)
    assert cfg.hyperparameters() == expected
    assert all(type(value) is float for value in cfg.hyperparameters().values())


def test_bad_configs_raise_clear_errors() -> None:
    with pytest.raises(UnknownArchitectureError, match="'gated'"):
        make_config("gated", d_in=4, d_sae=8)
    with pytest.raises(InvalidInputError, match="k must be"):
        make_config("topk", d_in=4, d_sae=8, k=9)
    with pytest.raises(InvalidInputError, match="bad fields.*l1_coeff"):
        make_config("topk", d_in=4, d_sae=8, l1_coeff=1.0)
    with pytest.raises(InvalidInputError, match="prefixes"):
        make_config("matryoshka", d_in=4, d_sae=8, k=2, prefixes=(4, 6))


def test_dimension_mismatch_is_named(tiny_clip: LoadedClip) -> None:
    sae = build_sae(make_config("topk", d_in=48, d_sae=96, k=4, site="resid:1"))
    with pytest.raises(ShapeMismatchError, match="d_in=48.*resid:1.*width 64"):
        check_sae_fits(sae, tiny_clip)
    with pytest.raises(ShapeMismatchError, match="d_in=48"):
        sae.encode(torch.randn(2, 64))
