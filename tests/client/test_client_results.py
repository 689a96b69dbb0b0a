"""Typed results from response messages: LatentInfo's neighbours and SaeInfo's hyperparameters."""

from __future__ import annotations

import pytest

from cliplens_client import LatentInfo, LatentNeighbour, SaeInfo
from cliplens_client.v1 import features_pb2, models_pb2


def test_latent_info_neighbours_keep_their_order() -> None:
    message = features_pb2.LatentInfoResponse(
        sae_id="demo-topk",
        latent=7,
        neighbours=[
            features_pb2.LatentNeighbour(latent=3, cosine=0.5),
            features_pb2.LatentNeighbour(latent=1, cosine=0.25),
        ],
    )
    assert LatentInfo.from_proto(message).neighbours == [LatentNeighbour(3, 0.5), LatentNeighbour(1, 0.25)]
    assert LatentInfo.from_proto(features_pb2.LatentInfoResponse()).neighbours == []


def test_sae_info_hyperparameters() -> None:
    message = models_pb2.SaeInfo(id="demo-topk", arch="topk", hyperparameters={"k": 8.0, "aux_k": 0.0})
    info = SaeInfo.from_proto(message)
    assert info.hyperparameters == pytest.approx({"k": 8.0, "aux_k": 0.0})
    assert SaeInfo.from_proto(models_pb2.SaeInfo(id="x")).hyperparameters == {}
