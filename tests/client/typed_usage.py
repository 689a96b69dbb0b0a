"""Not run, type-checked by test_client_methods.py: the types users' code sees of both clients' methods.

Each rpc method is written once (cliplens_client.calls); a type checker must still see its parameters,
and its result on Client, a coroutine of it on AsyncClient.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

import numpy as np
import numpy.typing as npt

from cliplens_client import AsyncClient, Client, Embeddings, SaeInfo, SparseCodes


def blocking(client: Client) -> None:
    assert_type(client.embed_texts("demo", ["a cat"], normalize=True), Embeddings)
    assert_type(client.encode("demo-topk", activations=[[1.0, 2.0]]), SparseCodes)
    assert_type(client.decode("demo-topk", [[0.0, 1.0]]), npt.NDArray[np.floating])
    assert_type(client.list_saes("demo", timeout=5), list[SaeInfo])
    client.embed_texts("demo", ["a cat"], normalise=True)  # type: ignore[call-arg]
    client.embed_texts("demo", ["a cat"], True)  # type: ignore[call-arg]
    client.list_saes(model_id=3)  # type: ignore[arg-type]
    assert_type(Client.list_saes(client), list[SaeInfo])


async def awaiting(client: AsyncClient) -> None:
    call = assert_type(client.embed_texts("demo", ["a cat"]), Coroutine[Any, Any, Embeddings])
    assert_type(await call, Embeddings)
    assert_type(await client.list_saes("demo", timeout=5), list[SaeInfo])
    await client.embed_texts("demo", ["a cat"], normalise=True)  # type: ignore[call-arg]
    await client.list_saes(model_id=3)  # type: ignore[arg-type]
    assert_type(await AsyncClient.list_saes(client), list[SaeInfo])
