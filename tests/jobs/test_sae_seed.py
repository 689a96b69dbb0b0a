"""``cliplens train-sae`` is reproducible: the same seed on the same run gives bit-identical weights."""

from __future__ import annotations

import pytest
import torch

from cliplens.cli import main
from cliplens.store import ActivationWriter, InputShard, LocalStore, RunSpec, load_sae_from_store

ROWS, D_IN = 600, 32
KEYS = tuple(f"row_{i:04d}" for i in range(ROWS))
# The flags of each architecture's own config fields (relu has an L1 penalty instead of k).
ARCH_ARGS = {
    "topk": ["--k", "4", "--aux-k", "16"],
    "relu": ["--l1-coeff", "1e-3"],
    "batchtopk": ["--k", "4"],
    "jumprelu": ["--l0-coeff", "1e-2"],
    "matryoshka": ["--k", "4", "--prefixes", "16,64"],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, str]:
    """A committed run of random activations in three shards (so shard order is shuffled too)."""
    store = LocalStore(tmp_path_factory.mktemp("seed") / "store")
    spec = RunSpec(
        model_id="tiny",
        site="final",
        preprocess="none",
        dataset_id="random",
        inputs=tuple(InputShard("parquet", f"rows-{i}.parquet", 1, "v1", 0, 200) for i in range(3)),
        rows_per_shard=200,
    )
    writer = ActivationWriter(store, spec)
    rows = torch.randn(ROWS, D_IN, generator=torch.Generator().manual_seed(0))
    for shard in writer.pending_input_shards():
        part = writer.write_part(
            shard, 0, list(KEYS[shard * 200 : (shard + 1) * 200]), rows[shard * 200 : (shard + 1) * 200]
        )
        writer.finish_input_shard(shard, [part])
    writer.commit()
    return store, writer.run_id


def train(store: LocalStore, run_id: str, arch: str, sae_id: str, *extra: str) -> dict[str, torch.Tensor]:
    args = ["train-sae", "--store", store.uri, "--run", run_id, "--sae-id", sae_id, "--arch", arch]
    args += [*ARCH_ARGS[arch], "--d-sae", "64", "--epochs", "2", "--batch-size", "64"]
    args += ["--buffer-rows", "256", "--warmup-steps", "5", "--device", "cpu", *extra]
    assert main(args) == 0
    return load_sae_from_store(store, sae_id).sae.state_dict()


@pytest.mark.parametrize("arch", sorted(ARCH_ARGS))
def test_same_seed_gives_bit_identical_sae_and_another_seed_does_not(
    run: tuple[LocalStore, str], arch: str
) -> None:
    store, run_id = run
    torch.manual_seed(123)  # the global RNG's state must not matter (nor be consumed)
    before = torch.get_rng_state()
    a = train(store, run_id, arch, f"{arch}-a")
    after = torch.get_rng_state()
    torch.manual_seed(456)
    b = train(store, run_id, arch, f"{arch}-b")
    other = train(store, run_id, arch, f"{arch}-c", "--seed", "1")

    assert a.keys() == b.keys() == other.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"same seed, different tensors: {different}"
    assert not torch.equal(a["W_dec"], other["W_dec"])
    assert not torch.equal(a["W_enc"], other["W_enc"])
    assert torch.equal(after, before), "training (or loading) an SAE changed torch's global RNG"
