"""AttributionApi: AttributeLatents, Decompose, Steer, DescribeHeads and RankHeads over a fake Attributor."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fakes import D_SAE, FINAL, MODEL, PATCHES, FakeAttributor, catalog, settings
from images import image

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.core.steering import LatentEdit
from cliplens.serve.attribution_api import AttributionApi
from cliplens.serve.request_checks import RequestImages
from cliplens.store import LocalStore
from cliplens_client.arrays import unpack_array
from cliplens_client.v1 import attribution_pb2, common_pb2

ADD = attribution_pb2.EDIT_OP_ADD


def api(store: LocalStore, backend: FakeAttributor, **changes: object) -> AttributionApi:
    app = settings(store, **changes)
    return AttributionApi(app, catalog(store), RequestImages(app.limits, None), backend)


def test_attribute_latents_passes_the_request_and_builds_the_response(store: LocalStore) -> None:
    backend = FakeAttributor()
    request = attribution_pb2.AttributeLatentsRequest(
        sae_id=PATCHES, image=image(), texts=["a", "b"], top_n=3, include_patch_maps=True
    )
    response = asyncio.run(api(store, backend).attribute_latents(request))
    assert backend.calls == [("attribute", (PATCHES, "image", ["a", "b"], 3, True))]
    assert response.sae_id == PATCHES and response.patch_grid == 2
    assert [t.text for t in response.texts] == ["a", "b"] and [t.score for t in response.texts] == [0.25, 0.5]
    latent = response.texts[0].latents[0]
    assert (latent.latent, latent.labels[0].text) == (0, "a label") and latent.attribution == pytest.approx(
        0.3
    )
    np.testing.assert_array_equal(unpack_array(latent.patch_map), np.ones((2, 2)))


def test_top_n_defaults_to_the_setting_and_is_bounded_by_the_saes_latents(store: LocalStore) -> None:
    backend = FakeAttributor()
    request = attribution_pb2.AttributeLatentsRequest(sae_id=FINAL, image=image(), texts=["a"])
    asyncio.run(api(store, backend, top_n_default=7).attribute_latents(request))
    assert backend.calls[0][1][3] == 7
    request.top_n = D_SAE + 1
    with pytest.raises(InvalidInputError, match=f"top_n: must be 1 to {D_SAE}"):
        asyncio.run(api(store, backend).attribute_latents(request))


def test_steer_converts_edits_and_checks_them_in_the_core(store: LocalStore) -> None:
    backend = FakeAttributor()
    edits = [attribution_pb2.LatentEdit(latent=3, value=2.0, op=ADD)]
    request = attribution_pb2.SteerRequest(
        sae_id=FINAL, image=image(), edits=edits, class_names=["cat", "dog"]
    )
    response = asyncio.run(api(store, backend).steer(request))
    assert backend.calls == [("steer", (FINAL, [LatentEdit(3, 2.0, "add")], ["cat", "dog"]))]
    assert [(c.class_name, c.before) for c in response.classes] == [("cat", 0.5), ("dog", 0.5)]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (attribution_pb2.LatentEdit(latent=1, value=1.0), r"edits\[0\].op: must be EDIT_OP_ADD"),
        (attribution_pb2.LatentEdit(latent=D_SAE, value=1.0, op=ADD), rf"edits\[0\].latent: {D_SAE} is not in \[0, {D_SAE}\)"),
        (attribution_pb2.LatentEdit(latent=1, value=float("inf"), op=ADD), r"edits\[0\].value: must be finite"),
    ],
)  # fmt: skip
def test_bad_edits_name_the_field(store: LocalStore, edit: attribution_pb2.LatentEdit, message: str) -> None:
    backend = FakeAttributor()
    request = attribution_pb2.SteerRequest(sae_id=FINAL, image=image(), edits=[edit])
    with pytest.raises(InvalidInputError, match=message):
        asyncio.run(api(store, backend).steer(request))
    assert backend.calls == []


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (attribution_pb2.AttributeLatentsRequest(sae_id=FINAL, image=image(), texts=["a"], include_patch_maps=True), InvalidInputError, "include_patch_maps: SAE 'final-sae' sits at 'final', not a patch site"),
        (attribution_pb2.AttributeLatentsRequest(sae_id="nope", image=image(), texts=["a"]), NotFoundError, "sae_id: unknown SAE 'nope'"),
        (attribution_pb2.AttributeLatentsRequest(sae_id=FINAL, texts=["a"]), InvalidInputError, "image: set either data or object_key"),
        (attribution_pb2.AttributeLatentsRequest(sae_id=FINAL, image=common_pb2.Image(object_key="a.jpg"), texts=["a"]), InvalidInputError, "no image bucket configured"),
        (attribution_pb2.DecomposeRequest(model_id=MODEL, image=image(), text=""), InvalidInputError, "text: must not be empty"),
        (attribution_pb2.DescribeHeadsRequest(model_id=MODEL, per_head=21), InvalidInputError, r"per_head: must be 1 to 20"),
        (attribution_pb2.RankHeadsRequest(model_id=MODEL, dataset="/etc/passwd"), InvalidInputError, "dataset: '/etc/passwd' is not a key"),
        (attribution_pb2.RankHeadsRequest(model_id=MODEL, max_images=5001), InvalidInputError, "max_images: must be 1 to 5000"),
        (attribution_pb2.RankHeadsRequest(model_id="x"), NotFoundError, "model_id: unknown model 'x'"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_field_and_reach_no_backend(
    store: LocalStore, request_: object, error: type[Exception], message: str
) -> None:
    backend = FakeAttributor()
    methods = {
        attribution_pb2.AttributeLatentsRequest: "attribute_latents",
        attribution_pb2.DecomposeRequest: "decompose",
        attribution_pb2.DescribeHeadsRequest: "describe_heads",
        attribution_pb2.RankHeadsRequest: "rank_heads",
    }
    with pytest.raises(error, match=message):
        asyncio.run(getattr(api(store, backend), methods[type(request_)])(request_))
    assert backend.calls == []


def test_describe_heads_maps_defaults_and_the_answer(store: LocalStore) -> None:
    backend = FakeAttributor()
    request = attribution_pb2.DescribeHeadsRequest(model_id=MODEL, layers=[1, 0, 1])
    response = asyncio.run(api(store, backend).describe_heads(request))
    assert backend.calls == [("describe_heads", (MODEL, [], 5, [0, 1]))]
    assert [(h.layer, len(h.descriptions)) for h in response.heads] == [(0, 5), (1, 5)]
    assert (
        response.heads[0].variance_explained == pytest.approx(0.5)
        and response.cached
        and response.n_images == 10
    )


def test_rank_heads_returns_the_top_n(store: LocalStore) -> None:
    backend = FakeAttributor()
    request = attribution_pb2.RankHeadsRequest(
        model_id=MODEL, dataset="sets/a.parquet", class_names=["cat", "dog"], top_n=2
    )
    response = asyncio.run(api(store, backend).rank_heads(request))
    assert backend.calls == [("rank_heads", (MODEL, "sets/a.parquet", ["cat", "dog"], 2000))]
    assert [(h.head, round(h.accuracy_drop, 3)) for h in response.heads] == [(3, 0.3), (2, 0.2)]
    assert list(response.class_names) == ["cat", "dog"] and not response.cached
