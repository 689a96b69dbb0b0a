"""Each rpc method is written once for both clients (cliplens_client.calls): what callers and type
checkers see of it on Client and on AsyncClient."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from test_client_rpcs import rpc_names, snake_case

from cliplens_client import AsyncClient, Client, Embeddings

ROOT = Path(__file__).resolve().parents[2]
TYPED_USAGE = Path(__file__).with_name("typed_usage.py")


@pytest.mark.parametrize("rpc", rpc_names())
def test_both_clients_show_the_method_with_its_signature_and_docstring(rpc: str) -> None:
    blocking, awaiting = getattr(Client, snake_case(rpc)), getattr(AsyncClient, snake_case(rpc))
    assert not inspect.iscoroutinefunction(blocking)
    assert inspect.signature(blocking) == inspect.signature(awaiting)
    assert "RpcCall" not in str(inspect.signature(blocking).return_annotation)
    assert "timeout" in inspect.signature(blocking).parameters
    assert blocking.__doc__ and blocking.__doc__ == awaiting.__doc__
    assert blocking.__name__ == awaiting.__name__ == snake_case(rpc)


def test_a_method_s_annotations_resolve_to_its_result() -> None:
    assert typing.get_type_hints(Client.embed_texts)["return"] is Embeddings
    assert (
        typing.get_type_hints(AsyncClient.list_saes)["return"]
        == typing.get_type_hints(Client.list_saes)["return"]
    )
    with Client("localhost:1") as client:
        assert str(inspect.signature(client.embed_texts)).startswith("(model_id: 'str',")


def test_type_checkers_see_the_result_on_client_and_a_coroutine_of_it_on_async_client(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path), str(TYPED_USAGE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
