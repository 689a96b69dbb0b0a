"""EncoderApi and ModelApi: checked requests in, the backend's answer as the response."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fakes import FINAL, MODEL, PATCHES, FakeEncoder, catalog, settings
from images import image

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.serve.encoder_api import EncoderApi
from cliplens.serve.model_api import ModelApi
from cliplens.serve.request_checks import RequestImages
from cliplens.store import LocalStore
from cliplens_client.arrays import unpack_array
from cliplens_client.v1 import common_pb2, encoder_pb2, models_pb2


def encoder_api(store: LocalStore, encoder: FakeEncoder, **changes: object) -> EncoderApi:
    app = settings(store, **changes)
    return EncoderApi(app, catalog(store), RequestImages(app.limits, None), encoder)


def test_embed_images_returns_the_backend_rows_normalised_in_the_asked_dtype(store: LocalStore) -> None:
    encoder = FakeEncoder()
    request = encoder_pb2.EmbedImagesRequest(
        model_id=MODEL, images=[image(), image()], normalize=True, dtype=common_pb2.DTYPE_FLOAT16
    )
    response = asyncio.run(encoder_api(store, encoder).embed_images(request))
    values = unpack_array(response.embeddings)
    assert response.model_id == MODEL and values.dtype == np.float16 and values.shape == (2, 4)
    np.testing.assert_allclose(values, 0.5, atol=1e-3)  # [i, i, i, i] normalised
    assert encoder.calls == [("embed_images", ["images[0]", "images[1]"])]


def test_embed_texts_unnormalised(store: LocalStore) -> None:
    encoder = FakeEncoder()
    request = encoder_pb2.EmbedTextsRequest(model_id=MODEL, texts=["a", "b", "c"])
    values = unpack_array(asyncio.run(encoder_api(store, encoder).embed_texts(request)).embeddings)
    np.testing.assert_array_equal(values[:, 0], [1, 2, 3])


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (encoder_pb2.EmbedTextsRequest(model_id="other", texts=["a"]), NotFoundError, "unknown model 'other'"),
        (encoder_pb2.EmbedTextsRequest(model_id=MODEL), InvalidInputError, "texts: give 1 to 2 entries, got 0"),
        (encoder_pb2.EmbedTextsRequest(model_id=MODEL, texts=["a", " "]), InvalidInputError, r"texts\[1\]: must not be empty"),
        (encoder_pb2.EmbedImagesRequest(model_id=MODEL, images=[image(b"")]), InvalidInputError, r"images\[0\]: empty image"),
        (encoder_pb2.EmbedImagesRequest(model_id=MODEL, images=[image(b"GIF89a...")]), InvalidInputError, "not a JPEG, PNG or WebP"),
        (encoder_pb2.EmbedImagesRequest(model_id=MODEL, images=[image()] * 3), InvalidInputError, "images: give 1 to 2 entries"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_field_and_reach_no_backend(
    store: LocalStore, request_: object, error: type[Exception], message: str
) -> None:
    encoder = FakeEncoder()
    api = encoder_api(store, encoder, limits={"max_texts": 2, "max_images": 2})
    method = api.embed_texts if isinstance(request_, encoder_pb2.EmbedTextsRequest) else api.embed_images
    with pytest.raises(error, match=message):
        asyncio.run(method(request_))  # type: ignore[arg-type]
    assert encoder.calls == []


def test_list_models_asks_the_encoder_once(store: LocalStore) -> None:
    encoder = FakeEncoder()
    api = ModelApi(catalog(store), encoder)
    first = asyncio.run(api.list_models(models_pb2.ListModelsRequest()))
    second = asyncio.run(api.list_models(models_pb2.ListModelsRequest()))
    assert first == second and [m.id for m in first.models] == [MODEL] and first.models[0].embed_dim == 4
    assert encoder.calls == [("facts", None)]


def test_list_saes_filters_by_model_and_reports_the_feature_index(store: LocalStore) -> None:
    api = ModelApi(catalog(store), FakeEncoder())
    saes = asyncio.run(api.list_saes(models_pb2.ListSaesRequest())).saes
    assert [(s.id, s.has_feature_index, s.site) for s in saes] == [
        (FINAL, True, "final"),
        (PATCHES, False, "resid:1:patches"),
    ]
    assert [dict(s.hyperparameters) for s in saes] == [{"k": 2.0, "aux_k": 0.0}, {"l1_coeff": 1e-3}]
    assert asyncio.run(api.list_saes(models_pb2.ListSaesRequest(model_id=MODEL))).saes == saes
    with pytest.raises(NotFoundError, match="model_id: unknown model 'x'"):
        asyncio.run(api.list_saes(models_pb2.ListSaesRequest(model_id="x")))
