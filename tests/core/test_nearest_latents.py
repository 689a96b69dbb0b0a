"""nearest_latents: decoder cosine neighbours against a brute-force computation, for every architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliplens.core.errors import InvalidInputError
from cliplens.core.sae import ARCHITECTURES, Sae, build_sae, make_config, nearest_latents

D_IN, D_SAE = 16, 64


def random_sae(arch: str, seed: int = 0) -> Sae:
    fields = {} if arch in ("relu", "jumprelu") else {"k": 4}
    sae = build_sae(make_config(arch, d_in=D_IN, d_sae=D_SAE, **fields), seed=seed)
    with torch.no_grad():  # unnormalised rows and a non-unit input scale: cosine must ignore both
        sae.W_dec.mul_(torch.rand(D_SAE, 1, generator=torch.Generator().manual_seed(seed)) + 0.5)
        sae.input_scale.fill_(3.0)
    return sae


def brute_force(sae: Sae, latent: int, n: int) -> list[tuple[int, float]]:
    """Cosine of every other row in float64 (0 against a zero row), sorted by (-cosine, index)."""
    rows = sae.W_dec.detach().double().numpy()
    norms = np.linalg.norm(rows, axis=1)
    scored = []
    for k in range(D_SAE):
        if k != latent:
            denominator = norms[k] * norms[latent]
            scored.append((k, float(rows[k] @ rows[latent] / denominator) if denominator > 0 else 0.0))
    return sorted(scored, key=lambda pair: (-pair[1], pair[0]))[:n]


def assert_same(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [k for k, _ in got] == [k for k, _ in expected]
    np.testing.assert_allclose([c for _, c in got], [c for _, c in expected], atol=1e-6)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_matches_brute_force_for_every_architecture(arch: str) -> None:
    sae = random_sae(arch)
    for latent in (0, 17, D_SAE - 1):
        got = nearest_latents(sae, latent, 10)
        assert_same(got, brute_force(sae, latent, 10))
        assert latent not in [k for k, _ in got]


def test_ties_go_to_the_lower_index_and_self_is_excluded() -> None:
    sae = random_sae("topk")
    with torch.no_grad():
        sae.W_dec[40] = sae.W_dec[9]  # rows 9 and 40 tie exactly
        sae.W_dec[30] = sae.W_dec[5]  # a copy of the latent itself: the best neighbour, not the latent
        sae.W_dec[[50, 20, 60]] = 0.0  # zero rows: cosine 0, tied with each other
    got = nearest_latents(sae, 5, D_SAE)
    assert_same(got, brute_force(sae, 5, D_SAE))
    order = [k for k, _ in got]
    assert len(got) == D_SAE - 1 and 5 not in order and order[0] == 30
    assert order.index(9) + 1 == order.index(40)
    zeros = [k for k, cosine in got if cosine == 0.0]
    assert zeros == [20, 50, 60] and order.index(20) + 2 == order.index(60)


def test_a_zero_latent_has_every_neighbour_at_cosine_zero_in_index_order() -> None:
    sae = random_sae("relu")
    with torch.no_grad():
        sae.W_dec[3] = 0.0
    assert nearest_latents(sae, 3, 4) == [(0, 0.0), (1, 0.0), (2, 0.0), (4, 0.0)]


def test_n_is_capped_by_the_other_latents_and_bad_arguments_raise() -> None:
    sae = random_sae("topk")
    assert len(nearest_latents(sae, 0, 1000)) == D_SAE - 1 and nearest_latents(sae, 0, 0) == []
    with pytest.raises(InvalidInputError, match="out of range"):
        nearest_latents(sae, D_SAE, 3)
    with pytest.raises(InvalidInputError, match="neighbours must be >= 0"):
        nearest_latents(sae, 0, -1)
