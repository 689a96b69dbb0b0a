"""The SAE catalog: save, list and load SAEs through local and S3 stores."""

from __future__ import annotations

import pytest
import torch

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.sae import TopKConfig, build_sae
from cliplens.store import ObjectStore, list_saes, load_sae_from_store, read_sae_record, save_sae_to_store


def test_catalog_round_trip(store: ObjectStore) -> None:
    sae = build_sae(TopKConfig(d_in=8, d_sae=32, k=4, model_id="demo", site="final", dataset_id="run123"))
    save_sae_to_store(store, "demo-topk", sae, metrics={"r2": 0.9})
    record = read_sae_record(store, "demo-topk")
    assert record.run_id == "run123" and record.metrics == {"r2": 0.9} and record.cfg == sae.cfg
    assert [r.sae_id for r in list_saes(store)] == ["demo-topk"]
    loaded = load_sae_from_store(store, "demo-topk").sae
    x = torch.randn(5, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), sae.eval()(x))


def test_catalog_errors(store: ObjectStore) -> None:
    with pytest.raises(NotFoundError, match="unknown SAE id 'absent'"):
        read_sae_record(store, "absent")
    with pytest.raises(InvalidInputError, match="invalid SAE id"):
        read_sae_record(store, "../escape")
