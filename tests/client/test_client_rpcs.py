"""Every rpc through the client: the request it sends and the typed result it returns."""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from canned_server import PNG_BYTES, SERVICE_MODULES, serve_canned

from cliplens_client import (
    AsyncClient,
    Client,
    HeadDescription,
    HeadDescriptions,
    HeadRanking,
    HeadText,
    InvalidRequestError,
    LatentEdit,
    ObjectKey,
    RankedHead,
    SparseCodes,
)
from cliplens_client.connection import TIMEOUT_METADATA
from cliplens_client.v1 import attribution_pb2, common_pb2

ROOT = Path(__file__).resolve().parents[2]
KINDS = pytest.mark.parametrize("kind", ["sync", "async"])


def rpc_names() -> list[str]:
    return [
        method.name
        for module in SERVICE_MODULES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_rpc_names_are_unique_across_services() -> None:
    """Ray Serve routes gRPC calls to the deployment method named like the rpc, so names must not repeat."""
    names = rpc_names()
    assert len(names) == len(set(names)) == 15


@pytest.mark.parametrize("rpc", rpc_names())
def test_both_clients_have_a_method_per_rpc(rpc: str) -> None:
    assert callable(getattr(Client, snake_case(rpc)))
    assert inspect.iscoroutinefunction(getattr(AsyncClient, snake_case(rpc)))


def test_encoder_rpcs(tmp_path: Path) -> None:
    with serve_canned() as server:
        image_file = tmp_path / "cat.png"
        image_file.write_bytes(PNG_BYTES)
        with Client(server.address) as client:
            images = client.embed_images(
                "demo", [image_file, ObjectKey("cifar10/test/1.png")], normalize=True
            )
            texts = client.embed_texts("demo", ["a cat"], dtype="float16")
        request = server.requests["EmbedImages"]
        assert [image.WhichOneof("source") for image in request.images] == ["data", "object_key"]
        assert request.images[0].data == PNG_BYTES and request.normalize
        assert images.vectors.shape == (2, 3) and images.vectors[1, 2] == 5
        assert server.requests["EmbedTexts"].dtype == common_pb2.DTYPE_FLOAT16
        assert texts.vectors.dtype == np.float16


def test_sae_rpcs() -> None:
    with serve_canned() as server:
        activations = np.ones((2, 3), dtype=np.float32)
        with Client(server.address) as client:
            codes = client.encode("demo-topk", activations=activations, max_active_per_row=4)
            decoded = client.decode("demo-topk", codes)
            reconstruction = client.reconstruct("demo-topk", images=[PNG_BYTES], include_latents=True)
        assert server.requests["Encode"].input.activations.shape == [2, 3]
        assert server.requests["Encode"].max_active_per_row == 4
        dense = codes.to_dense()
        assert dense.shape == (2, 8) and dense[0, 5] == 2.0 and not dense[1].any()
        assert server.requests["Decode"].sparse.rows[0].indices == [1, 5]
        assert decoded.shape == (2, 3)
        assert server.requests["Reconstruct"].input.WhichOneof("source") == "images"
        assert reconstruction.nmse == pytest.approx(0.1) and reconstruction.row_nmse.shape == (2,)
        assert isinstance(reconstruction.codes, SparseCodes)


def test_attribution_rpcs() -> None:
    with serve_canned() as server:
        with Client(server.address) as client:
            texts = client.attribute_latents("demo-topk", PNG_BYTES, ["a cat"], top_n=5, patch_maps=True)
            decomposition = client.decompose("demo", ObjectKey("k.png"), "a cat")
            steering = client.steer(
                "demo-topk",
                PNG_BYTES,
                [LatentEdit(7, "clamp", 0.0), LatentEdit(3, "add", 2.5)],
                class_names=["cat"],
            )
        assert server.requests["AttributeLatents"].top_n == 5
        (text,) = texts
        assert text.error_share == pytest.approx(0.125)
        assert text.latents[0].labels[0].text == "striped fur"
        assert text.latents[0].patch_map is not None and text.latents[0].patch_map.shape == (2, 2)
        assert decomposition.layers[0].heads.tolist() == pytest.approx([0.02, 0.08])
        assert decomposition.patch_heatmap is not None and decomposition.patch_heatmap.shape == (2, 2)
        edits = server.requests["Steer"].edits
        assert [(e.latent, e.op) for e in edits] == [
            (7, attribution_pb2.EDIT_OP_CLAMP),
            (3, attribution_pb2.EDIT_OP_ADD),
        ]
        assert steering.classes[0].after == pytest.approx(0.75)
        assert steering.steered_embedding.tolist() == [1.0, 1.0, 1.0]


def test_feature_and_model_rpcs_through_the_async_client() -> None:
    with serve_canned() as server:

        async def run() -> tuple:
            async with AsyncClient(server.address) as client:
                return (
                    await client.top_activations("demo-topk", 7, k=2),
                    await client.latent_info("demo-topk", 7),
                    await client.search_latents("demo-topk", "stripes", top_n=3),
                    await client.list_models(),
                    await client.list_saes("demo"),
                )

        top, info, search, models, saes = asyncio.run(run())
        assert server.requests["TopActivations"].k == 2
        assert (top.source, top.degraded) == ("redis", False)
        assert [item.patch for item in top.inputs] == [3, None]
        assert (info.source, info.degraded, info.counts.tolist()) == ("store", True, [10, 3])
        assert server.requests["SearchLatents"].text == "stripes"
        assert search.matches[0].latent == 7
        assert models[0].id == "demo" and saes[0].model_id == "demo"
        assert server.requests["ListSaes"].model_id == "demo"


def call(kind: str, address: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """``method(*args, **kwargs)`` through a fresh sync or async client."""
    if kind == "sync":
        with Client(address) as client:
            return getattr(client, method)(*args, **kwargs)

    async def run() -> Any:
        async with AsyncClient(address) as client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(run())


@KINDS
def test_describe_heads_sends_its_inputs_and_returns_typed_descriptions(kind: str) -> None:
    with serve_canned() as server:
        pool = ["a photo of a cat", "stripes", "a dog"]
        result = call(kind, server.address, "describe_heads", "demo", pool=pool, per_head=2, layers=[3, 3])
        request = server.requests["DescribeHeads"]
    assert (request.model_id, list(request.pool), request.per_head, list(request.layers)) == (
        "demo",
        pool,
        2,
        [3, 3],
    )
    described = [HeadText("a photo of a cat", 0.25), HeadText("stripes", 0.125)]
    assert result == HeadDescriptions(
        model_id="demo",
        n_images=2000,
        heads=[HeadDescription(3, 0, described, 0.375, 2.5), HeadDescription(3, 1, [], 0.0, 0.0)],
        cached=True,
    )
    text, share = result.heads[0].descriptions[0]  # each description is a (text, variance_explained) pair
    assert (text, share) == ("a photo of a cat", 0.25)


@KINDS
def test_rank_heads_sends_its_inputs_and_returns_a_typed_ranking(kind: str) -> None:
    with serve_canned() as server:
        result = call(
            kind,
            server.address,
            "rank_heads",
            "demo",
            dataset="labelled/pets.parquet",
            class_names=["cat", "dog"],
            max_images=500,
            top_n=2,
        )
        request = server.requests["RankHeads"]
    assert (request.model_id, request.dataset, list(request.class_names)) == (
        "demo",
        "labelled/pets.parquet",
        ["cat", "dog"],
    )
    assert (request.max_images, request.top_n) == (500, 2)
    assert result == HeadRanking(
        model_id="demo",
        n_images=500,
        accuracy=0.875,
        class_names=["cat", "dog"],
        heads=[RankedHead(3, 1, 0.75, 0.125), RankedHead(0, 2, 0.90625, -0.03125)],
        cached=False,
    )


def test_heads_rpcs_leave_the_defaults_to_the_server() -> None:
    with serve_canned() as server:
        with Client(server.address) as client:
            client.describe_heads("demo")
            client.rank_heads("demo")
        describe, rank = server.requests["DescribeHeads"], server.requests["RankHeads"]
    assert (list(describe.pool), describe.per_head, list(describe.layers)) == ([], 0, [])
    assert (rank.dataset, list(rank.class_names), rank.max_images, rank.top_n) == ("", [], 0, 0)


@KINDS
@pytest.mark.parametrize(
    ("method", "kwargs", "problem"),
    [
        ("describe_heads", {"per_head": 21}, "per_head must be an integer <= 20"),
        ("describe_heads", {"pool": ["a", "b"], "per_head": 3}, "at most the pool size 2"),
        ("describe_heads", {"layers": [0, -1]}, r"layers\[1\] must be an integer >= 0"),
        ("rank_heads", {"class_names": ["cat"]}, "class_names must hold 2 to 1000 entries"),
        ("rank_heads", {"top_n": 1001}, "top_n must be an integer <= 1000"),
    ],
)
def test_bad_heads_arguments_are_refused_before_any_call(
    kind: str, method: str, kwargs: dict[str, Any], problem: str
) -> None:
    with serve_canned() as server:
        with pytest.raises(InvalidRequestError, match=problem):
            call(kind, server.address, method, "demo", **kwargs)
        assert server.requests == {}


@KINDS
def test_every_call_sends_the_time_left_of_its_deadline(kind: str) -> None:
    with serve_canned() as server:
        call(kind, server.address, "rank_heads", "demo", timeout=600)
        call(kind, server.address, "list_models")  # the client's default timeout, 30 s
        heads_ms, default_ms = (server.metadata[rpc][TIMEOUT_METADATA] for rpc in ("RankHeads", "ListModels"))
    assert heads_ms.isdigit() and default_ms.isdigit()  # whole milliseconds, as a decimal string
    assert 0 < int(heads_ms) <= 600_000
    assert 0 < int(default_ms) <= 30_000


def test_timeout_metadata_is_the_name_the_server_reads() -> None:
    """The server's call frame reads the header under this name (parsed: importing it would pull in ray)."""
    tree = ast.parse((ROOT / "services" / "cliplens" / "serve" / "rpc_frame.py").read_text())
    names = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert names["TIMEOUT_METADATA"] == TIMEOUT_METADATA
