"""FeatureApi: lookups from the feature index (Redis or the store), labels and neighbours from the Attributor."""

from __future__ import annotations

import asyncio

import pytest
from fakes import D_SAE, FINAL, FakeAttributor, FakeFeatures, Gate, catalog, settings

from cliplens.core.errors import InvalidInputError, NotFoundError
from cliplens.serve.feature_api import FeatureApi
from cliplens.store import LocalStore
from cliplens_client.v1 import features_pb2


def api(
    store: LocalStore, features: FakeFeatures, attributor: FakeAttributor, **changes: object
) -> FeatureApi:
    return FeatureApi(settings(store, **changes), catalog(store), features, attributor)  # type: ignore[arg-type]


@pytest.mark.parametrize("degraded", [False, True])
def test_top_activations_say_where_they_came_from(store: LocalStore, degraded: bool) -> None:
    features = FakeFeatures(degraded=degraded)
    request = features_pb2.TopActivationsRequest(sae_id=FINAL, latent=3)
    response = asyncio.run(api(store, features, FakeAttributor(), top_k_default=4).top_activations(request))
    assert features.calls == [("top", (FINAL, "run", 3, 4))]
    assert [i.input_id for i in response.inputs] == ["key-0", "key-1", "key-2", "key-3"]
    source = features_pb2.FEATURE_SOURCE_STORE if degraded else features_pb2.FEATURE_SOURCE_REDIS
    assert (response.source, response.degraded) == (source, degraded)


def test_latent_info_has_the_stats_and_the_configured_numbers_of_labels_and_neighbours(
    store: LocalStore,
) -> None:
    attributor = FakeAttributor()
    request = features_pb2.LatentInfoRequest(sae_id=FINAL, latent=2)
    latent_info = api(
        store, FakeFeatures(), attributor, labels_in_latent_info=4, neighbours_in_latent_info=3
    ).latent_info
    info = asyncio.run(latent_info(request))
    assert attributor.calls == [("labels", (FINAL, [2], 4)), ("neighbours", (FINAL, 2, 3))]
    assert [label.text for label in info.labels] == ["label 0", "label 1", "label 2", "label 3"]
    assert [n.latent for n in info.neighbours] == [3, 4, 5]
    assert [n.cosine for n in info.neighbours] == pytest.approx([0.9, 0.8, 0.7])
    assert info.alignment == 1.0 and info.firing_rate == 0.25
    assert list(info.histogram.counts) == [3, 2] and dict(info.label_counts) == {"cat": 4, "dog": 1}


def test_latent_info_asks_for_labels_and_neighbours_at_once(store: LocalStore) -> None:
    attributor = FakeAttributor(gate=Gate())
    request = features_pb2.LatentInfoRequest(sae_id=FINAL, latent=5)

    async def scenario() -> features_pb2.LatentInfoResponse:
        call = asyncio.ensure_future(api(store, FakeFeatures(), attributor).latent_info(request))
        # Both calls reach the gate only if the second starts before the first returns.
        await asyncio.wait_for(attributor.gate.until_arrived(2), timeout=10)  # type: ignore[union-attr]
        attributor.gate.open()  # type: ignore[union-attr]
        return await call

    info = asyncio.run(scenario())
    assert len(info.labels) == 10 and [n.latent for n in info.neighbours] == list(range(6, 14))


def test_search_latents_default_top_n(store: LocalStore) -> None:
    attributor = FakeAttributor()
    request = features_pb2.SearchLatentsRequest(sae_id=FINAL, text="a red car")
    response = asyncio.run(api(store, FakeFeatures(), attributor, top_n_default=3).search_latents(request))
    assert attributor.calls == [("search", (FINAL, "a red car", 3))] and len(response.matches) == 3


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (features_pb2.TopActivationsRequest(sae_id=FINAL, latent=D_SAE), NotFoundError, f"latent: SAE 'final-sae' has no latent {D_SAE}"),
        (features_pb2.TopActivationsRequest(sae_id=FINAL, latent=0, k=1001), InvalidInputError, "k: must be 1 to 1000"),
        (features_pb2.LatentInfoRequest(sae_id="nope", latent=0), NotFoundError, "unknown SAE 'nope'"),
        (features_pb2.SearchLatentsRequest(sae_id=FINAL, text="  "), InvalidInputError, "text: must not be empty"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_field_and_reach_no_backend(
    store: LocalStore, request_: object, error: type[Exception], message: str
) -> None:
    features, attributor = FakeFeatures(), FakeAttributor()
    methods = {
        features_pb2.TopActivationsRequest: "top_activations",
        features_pb2.LatentInfoRequest: "latent_info",
        features_pb2.SearchLatentsRequest: "search_latents",
    }
    with pytest.raises(error, match=message):
        asyncio.run(getattr(api(store, features, attributor), methods[type(request_)])(request_))
    assert features.calls == [] and attributor.calls == []
