"""SaeApi: rows given or taken from images, dense or sparse latents, reconstruction errors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fakes import D_IN, D_SAE, FINAL, PATCHES, FakeEncoder, FakeSae, catalog, settings
from images import image

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.serve.request_checks import RequestImages
from cliplens.serve.sae_api import SaeApi
from cliplens.store import LocalStore
from cliplens_client.arrays import pack_array, unpack_array
from cliplens_client.v1 import common_pb2, sae_pb2


def api(store: LocalStore, sae: FakeSae, encoder: FakeEncoder | None = None) -> SaeApi:
    app = settings(store, limits={"max_rows": 6})
    return SaeApi(app, catalog(store), RequestImages(app.limits, None), encoder or FakeEncoder(), sae)


def rows(n: int) -> np.ndarray:
    return np.arange(n * D_IN, dtype=np.float32).reshape(n, D_IN) % 5


def test_encode_activations_keeps_their_leading_shape(store: LocalStore) -> None:
    sae = FakeSae()
    given = rows(6).reshape(2, 3, D_IN)
    request = sae_pb2.EncodeRequest(
        sae_id=FINAL, input=sae_pb2.SaeInput(activations=pack_array(given)), max_active_per_row=2
    )
    response = asyncio.run(api(store, sae).encode(request))
    assert list(response.batch_shape) == [2, 3] and response.latents.d_sae == D_SAE
    assert len(response.latents.rows) == 6 and all(len(row.indices) == 2 for row in response.latents.rows)
    assert sae.calls == [("encode", (FINAL, (6, D_IN), 2))]


def test_encode_images_takes_rows_from_the_encoder_at_the_saes_site(store: LocalStore) -> None:
    sae, encoder = FakeSae(), FakeEncoder()
    request = sae_pb2.EncodeRequest(
        sae_id=PATCHES, input=sae_pb2.SaeInput(images=common_pb2.ImageBatch(images=[image(), image()]))
    )
    response = asyncio.run(api(store, sae, encoder).encode(request))
    assert list(response.batch_shape) == [2, 3] and encoder.calls == [("site_activations", "resid:1:patches")]


def test_decode_dense_and_sparse_agree(store: LocalStore) -> None:
    sae = FakeSae()
    dense = np.zeros((2, D_SAE), np.float32)
    dense[0, [1, 5]], dense[1, [0]] = [1.0, 2.0], [3.0]
    sparse = common_pb2.SparseLatents(
        d_sae=D_SAE,
        rows=[
            common_pb2.SparseRow(indices=[1, 5], values=[1.0, 2.0]),
            common_pb2.SparseRow(indices=[0], values=[3.0]),
        ],
    )
    by_dense = asyncio.run(
        api(store, sae).decode(sae_pb2.DecodeRequest(sae_id=FINAL, dense=pack_array(dense)))
    )
    by_sparse = asyncio.run(api(store, sae).decode(sae_pb2.DecodeRequest(sae_id=FINAL, sparse=sparse)))
    np.testing.assert_array_equal(unpack_array(by_dense.activations), unpack_array(by_sparse.activations))
    np.testing.assert_array_equal(sae.calls[0][1], dense)


def test_reconstruct_reports_the_error_of_the_backends_reconstruction(store: LocalStore) -> None:
    given = rows(4)
    request = sae_pb2.ReconstructRequest(
        sae_id=FINAL, input=sae_pb2.SaeInput(activations=pack_array(given)), include_latents=True
    )
    response = asyncio.run(api(store, FakeSae()).reconstruct(request))
    np.testing.assert_array_equal(unpack_array(response.reconstruction), given * 0.5)
    assert response.error.mse == pytest.approx(float(((given * 0.5) ** 2).mean()))
    assert response.error.nmse == pytest.approx(0.25) and len(response.latents.rows) == 4


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (sae_pb2.EncodeRequest(sae_id="nope", input=sae_pb2.SaeInput(activations=pack_array(rows(1)))), NotFoundError, "unknown SAE 'nope'"),
        (sae_pb2.EncodeRequest(sae_id=FINAL), InvalidInputError, "input: set either activations or images"),
        (sae_pb2.EncodeRequest(sae_id=FINAL, input=sae_pb2.SaeInput(activations=pack_array(rows(7)))), InvalidInputError, "input.activations: 7 rows; give 1 to 6"),
        (sae_pb2.EncodeRequest(sae_id=FINAL, input=sae_pb2.SaeInput(activations=pack_array(np.ones((1, 3), np.float32)))), InvalidInputError, "must end in the width 8"),
        (sae_pb2.EncodeRequest(sae_id=FINAL, input=sae_pb2.SaeInput(activations=pack_array(np.full((1, D_IN), np.nan, np.float32)))), InvalidInputError, "values must be finite"),
        (sae_pb2.DecodeRequest(sae_id=FINAL), InvalidInputError, "latents: set either dense or sparse"),
        (sae_pb2.DecodeRequest(sae_id=FINAL, sparse=common_pb2.SparseLatents(d_sae=3)), InvalidInputError, "sparse.d_sae: 3 differs"),
        (sae_pb2.DecodeRequest(sae_id=FINAL, sparse=common_pb2.SparseLatents(d_sae=D_SAE, rows=[common_pb2.SparseRow(indices=[4, 2], values=[1, 1])])), InvalidInputError, r"sparse.rows\[0\].indices: must increase strictly"),
        (sae_pb2.DecodeRequest(sae_id=FINAL, sparse=common_pb2.SparseLatents(d_sae=D_SAE, rows=[common_pb2.SparseRow(indices=[1], values=[1, 2])])), InvalidInputError, r"sparse.rows\[0\]: 1 indices but 2 values"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_field_and_reach_no_backend(
    store: LocalStore, request_: object, error: type[Exception], message: str
) -> None:
    sae = FakeSae()
    method = api(store, sae).decode if isinstance(request_, sae_pb2.DecodeRequest) else api(store, sae).encode
    with pytest.raises(error, match=message):
        asyncio.run(method(request_))  # type: ignore[arg-type]
    assert sae.calls == []
