"""Every rpc through the real client, over gRPC, against the demo app."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from imported_saes import PEERS, imported_id
from serve_setup import ServeApp

from cliplens.core.attribution import attribute_latents
from cliplens.core.decomposition import decompose, direct_effects
from cliplens.core.models import LoadedClip
from cliplens.core.sae import Sae, nearest_latents
from cliplens.core.steering import LatentEdit as CoreEdit
from cliplens.core.steering import steer_and_classify
from cliplens.demo.catalogue import FINAL_SAE, PATCH_SAE, RUN_ID
from cliplens.store import LocalStore, decode_image, load_sae_from_store
from cliplens.store.head_results import describe_heads_cached, rank_heads_cached
from cliplens_client import Client, LatentEdit, ObjectKey


def final_sae(serve_app: ServeApp) -> Sae:
    return load_sae_from_store(LocalStore(serve_app.index.store_dir), FINAL_SAE).sae


def test_list_models_reports_the_demo_model(client: Client) -> None:
    (model,) = client.list_models()
    assert (model.id, model.embed_dim, model.image_size, model.n_layers, model.patch_grid) == (
        "demo",
        128,
        32,
        4,
        8,
    )


def test_list_saes_with_their_feature_index(client: Client) -> None:
    saes = client.list_saes()
    assert [s.id for s in saes] == sorted([FINAL_SAE, PATCH_SAE, *map(imported_id, PEERS)])
    demo = [s for s in saes if s.id in (FINAL_SAE, PATCH_SAE)]
    assert all(s.has_feature_index and s.dataset_id == RUN_ID and s.d_sae == 256 for s in demo)
    imported = [s for s in saes if s.id not in (FINAL_SAE, PATCH_SAE)]  # by peers' code, no index
    assert all(not s.has_feature_index and (s.site, s.d_in) == ("final", 128) for s in imported)
    assert client.list_saes("demo") == saes
    hyperparameters = {s.id: s.hyperparameters for s in saes}
    assert hyperparameters[FINAL_SAE]["k"] == 8 and set(hyperparameters[PATCH_SAE]) == {"l1_coeff"}


def test_embed_images_matches_in_process_model(
    client: Client, serve_app: ServeApp, demo_clip: LoadedClip
) -> None:
    jpegs = serve_app.index.jpegs[:3]
    result = client.embed_images("demo", [*jpegs, ObjectKey(serve_app.index.keys[0])], normalize=True)
    values = np.asarray(result.vectors)
    assert values.shape == (4, 128)
    np.testing.assert_allclose(np.linalg.norm(values, axis=1), 1.0, rtol=1e-5)
    with torch.no_grad():
        local = demo_clip.model.encode_image(demo_clip.preprocess_images([decode_image(j) for j in jpegs]))
    local = torch.nn.functional.normalize(local, dim=-1).numpy()
    np.testing.assert_allclose(values[:3], local, atol=1e-4)
    np.testing.assert_allclose(values[3], values[0], atol=1e-6)


def test_embed_texts_float16(client: Client) -> None:
    result = client.embed_texts("demo", ["a cat", "a truck"], dtype="float16")
    values = np.asarray(result.vectors)
    assert values.dtype == np.float16 and values.shape == (2, 128)
    assert not np.allclose(values[0], values[1])


def test_encode_decode_reconstruct_round_trip(client: Client, serve_app: ServeApp) -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(5, 128)).astype(np.float32)
    codes = client.encode(FINAL_SAE, activations=rows)
    dense = np.zeros((5, 256), np.float32)
    for i, (indices, values) in enumerate(zip(codes.indices, codes.values, strict=True)):
        assert len(indices) <= 8  # a TopK SAE with k=8
        dense[i, indices] = values
    decoded = np.asarray(client.decode(FINAL_SAE, dense))
    sparse_decoded = np.asarray(client.decode(FINAL_SAE, codes))
    np.testing.assert_allclose(decoded, sparse_decoded, atol=1e-5)
    recon = client.reconstruct(FINAL_SAE, activations=rows, include_latents=True)
    np.testing.assert_allclose(np.asarray(recon.reconstruction), decoded, atol=1e-5)
    assert recon.row_nmse.shape == (5,) and recon.nmse > 0


def test_encode_images_at_a_patch_site(client: Client, serve_app: ServeApp) -> None:
    codes = client.encode(PATCH_SAE, images=serve_app.index.jpegs[:2], max_active_per_row=3)
    assert codes.batch_shape == (2, 64)
    assert max(len(i) for i in codes.indices) <= 3


@pytest.mark.parametrize("patch_maps", [False, True])
def test_attribute_latents(client: Client, serve_app: ServeApp, patch_maps: bool) -> None:
    sae = PATCH_SAE if patch_maps else FINAL_SAE
    texts = ["a photo of a cat", "a photo of a ship"]
    result = client.attribute_latents(sae, serve_app.index.jpegs[0], texts, top_n=4, patch_maps=patch_maps)
    assert [t.text for t in result] == texts
    for text in result:
        assert -1 <= text.score <= 1 and len(text.latents) == 4 and 0 <= text.error_share <= 1
        magnitudes = [abs(latent.attribution) for latent in text.latents]
        assert magnitudes == sorted(magnitudes, reverse=True)
        assert all(len(latent.labels) == 3 for latent in text.latents)
        if patch_maps:
            assert all(np.asarray(latent.patch_map).shape == (8, 8) for latent in text.latents)


def test_attribution_equals_the_in_process_core(
    client: Client, serve_app: ServeApp, demo_clip: LoadedClip
) -> None:
    texts = ["a dog", "a photo of a ship"]
    jpeg = serve_app.index.jpegs[1]
    served = client.attribute_latents(FINAL_SAE, jpeg, texts, top_n=100)
    pixels = demo_clip.preprocess_images([decode_image(jpeg)])
    local = attribute_latents(demo_clip, final_sae(serve_app), pixels, demo_clip.encode_texts(texts))
    for t, text in enumerate(served):
        assert text.score == pytest.approx(float(local.scores[0, t]), abs=1e-5)
        assert text.error_attribution == pytest.approx(float(local.error[0, t]), abs=1e-5)
        for latent in text.latents:
            assert latent.attribution == pytest.approx(
                float(local.attributions[0, t, latent.latent]), abs=1e-5
            )
            assert latent.activation == pytest.approx(
                float(local.latent_activations[0, latent.latent]), abs=1e-5
            )
        assert len(text.latents) == 100


def test_decompose_equals_the_in_process_core(
    client: Client, serve_app: ServeApp, demo_clip: LoadedClip
) -> None:
    jpeg, text = serve_app.index.jpegs[2], "a photo of a frog"
    result = client.decompose("demo", jpeg, text)
    with torch.no_grad():
        pixels = demo_clip.preprocess_images([decode_image(jpeg)])
        scores = direct_effects(decompose(demo_clip.model, pixels), demo_clip.encode_texts([text])[0])
    assert result.score == pytest.approx(float(scores.total()[0, 0]), abs=1e-5)
    heads = scores.per_head()[0, :, :, 0]
    for layer, served in enumerate(result.layers):
        assert served.mlp == pytest.approx(float(scores.mlp[0, layer, 0]), abs=1e-5)
        np.testing.assert_allclose(served.heads, heads[layer].numpy(), atol=1e-5)
    heatmap = np.asarray(result.patch_heatmap).ravel()
    np.testing.assert_allclose(heatmap, scores.per_patch()[0, :, 0].numpy(), atol=1e-5)


def test_steer_equals_the_in_process_core(client: Client, serve_app: ServeApp, demo_clip: LoadedClip) -> None:
    classes, jpeg = ["cat", "dog", "ship"], serve_app.index.jpegs[0]
    result = client.steer(FINAL_SAE, jpeg, [LatentEdit(3, "add", 5.0)], class_names=classes)
    pixels = demo_clip.preprocess_images([decode_image(jpeg)])
    local = steer_and_classify(demo_clip, final_sae(serve_app), pixels, [CoreEdit(3, 5.0, "add")], classes)
    np.testing.assert_allclose(np.asarray(result.original_embedding), local.original[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(np.asarray(result.steered_embedding), local.steered[0].numpy(), atol=1e-5)
    assert [c.class_name for c in result.classes] == classes
    np.testing.assert_allclose([c.before for c in result.classes], local.probabilities_before[0], atol=1e-5)
    np.testing.assert_allclose([c.after for c in result.classes], local.probabilities_after[0], atol=1e-5)
    assert not np.allclose(local.original, local.steered)


def test_top_activations_from_redis(client: Client, serve_app: ServeApp) -> None:
    result = client.top_activations(FINAL_SAE, serve_app.index.active_latent, k=5)
    assert result.source == "redis" and not result.degraded
    activations = [item.activation for item in result.inputs]
    assert len(activations) == 5 and activations == sorted(activations, reverse=True)
    assert all(item.input_id.startswith("cifar10-test/") for item in result.inputs)


def test_latent_info_and_search(client: Client, serve_app: ServeApp) -> None:
    info = client.latent_info(FINAL_SAE, 1)
    assert info.source == "redis" and 0 <= info.firing_rate <= 1 and len(info.labels) == 10
    assert info.alignment == info.labels[0].alignment
    local = nearest_latents(final_sae(serve_app), 1, serve_app.settings.neighbours_in_latent_info)
    assert len(info.neighbours) == len(local) == 8
    assert [n.latent for n in info.neighbours] == [k for k, _ in local]
    np.testing.assert_allclose([n.cosine for n in info.neighbours], [c for _, c in local], atol=1e-5)
    search = client.search_latents(FINAL_SAE, "a red car", top_n=5)
    alignments = [m.alignment for m in search.matches]
    assert len(alignments) == 5 and alignments == sorted(alignments, reverse=True)


def test_heads_are_described_and_ranked_once_then_read_from_the_store(
    client: Client, serve_app: ServeApp, demo_clip: LoadedClip, tmp_path: Path
) -> None:
    pool = ["a cat", "a dog", "a ship", "a truck", "a red thing", "a blue thing", "a bird", "a frog"]
    first = client.describe_heads("demo", pool=pool, per_head=2, layers=[3], timeout=600)
    again = client.describe_heads("demo", pool=pool, per_head=2, layers=[3], timeout=600)
    assert (first.cached, again.cached) == (False, True) and again.heads == first.heads
    local = describe_heads_cached(LocalStore(tmp_path / "a"), demo_clip, pool=pool, per_head=2, layers=[3])
    assert [(h.layer, h.head) for h in first.heads] == [(h.layer, h.head) for h in local.result.heads]
    for served, expected in zip(first.heads, local.result.heads, strict=True):
        assert [d.text for d in served.descriptions] == [p.text for p in expected.descriptions]
        assert served.variance == pytest.approx(expected.variance, rel=1e-4)
    ranking = client.rank_heads("demo", max_images=64, top_n=3, timeout=600)
    expected_ranking = rank_heads_cached(LocalStore(tmp_path / "b"), demo_clip, max_images=64).result
    assert ranking.accuracy == pytest.approx(expected_ranking.accuracy) and ranking.n_images == 64
    assert [(h.layer, h.head, round(h.accuracy_drop, 6)) for h in ranking.heads] == [
        (h.layer, h.head, round(h.accuracy_drop, 6)) for h in expected_ranking.top(3)
    ]
