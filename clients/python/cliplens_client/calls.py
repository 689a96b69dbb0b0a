"""Each rpc method is written once, for both clients: blocking on Client, a coroutine on AsyncClient.

A method of :class:`~cliplens_client.api_calls.ApiCalls` decorated with :class:`RpcMethod` builds
the call (:class:`RpcCall`: the rpc, its request, how to parse the response, the timeout) and the
client's ``_call`` makes it: ``Client._call`` returns the parsed result, ``AsyncClient._call`` is a
coroutine. Type checkers see ``Client.embed_texts(...) -> Embeddings`` and
``AsyncClient.embed_texts(...) -> Coroutine[Any, Any, Embeddings]``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import MethodType
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, get_args, overload

from google.protobuf.message import Message

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True)
class RpcCall(Generic[R]):
    """One call to make: ``parse`` turns the response of ``rpc`` to ``request`` into the result."""

    rpc: str
    request: Message
    parse: Callable[[Any], R]
    timeout: float | None


class Blocking(Protocol):
    """A client whose ``_call`` returns the result (:class:`~cliplens_client.Client`)."""

    def _call(self, call: RpcCall[T], /) -> T: ...


class Awaiting(Protocol):
    """A client whose ``_call`` is a coroutine (:class:`~cliplens_client.AsyncClient`)."""

    def _call(self, call: RpcCall[T], /) -> Coroutine[Any, Any, T]: ...


B = TypeVar("B", bound=Blocking)
A = TypeVar("A", bound=Awaiting)


class RpcMethod(Generic[P, R]):
    """The client method made from ``spec``: its signature and docstring, returning ``R``.

    ``spec`` takes the method's arguments and returns the :class:`RpcCall` to make; on a class whose
    ``_call`` is a coroutine function the method is a coroutine function too.
    """

    def __init__(self, spec: Callable[Concatenate[Any, P], RpcCall[R]]) -> None:
        def blocking(client: Any, *args: Any, **kwargs: Any) -> Any:
            return client._call(spec(client, *args, **kwargs))

        async def coroutine(client: Any, *args: Any, **kwargs: Any) -> Any:
            return await client._call(spec(client, *args, **kwargs))

        signature = inspect.signature(spec)
        result = _result_annotation(signature.return_annotation)
        signature = signature.replace(return_annotation=result)  # R, not RpcCall[R]
        methods: tuple[Callable[..., Any], ...] = (blocking, coroutine)
        for method in methods:
            functools.update_wrapper(method, spec)
            method.__annotations__ = {**spec.__annotations__, "return": result}
            method.__signature__ = signature  # type: ignore[attr-defined]
        self._blocking, self._coroutine = blocking, coroutine

    @overload
    def __get__(self, client: None, owner: type[B]) -> Callable[Concatenate[B, P], R]: ...
    @overload
    def __get__(
        self, client: None, owner: type[A]
    ) -> Callable[Concatenate[A, P], Coroutine[Any, Any, R]]: ...
    @overload
    def __get__(self, client: Blocking, owner: type[Any]) -> Callable[P, R]: ...
    @overload
    def __get__(self, client: Awaiting, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, R]]: ...
    def __get__(self, client: Any, owner: type[Any]) -> Any:
        transport = getattr(owner, "_call", None)
        if transport is None:  # on ApiCalls itself
            return self
        method = self._coroutine if inspect.iscoroutinefunction(transport) else self._blocking
        return method if client is None else MethodType(method, client)


def _result_annotation(annotation: Any) -> Any:
    """``R`` of a spec's return annotation ``RpcCall[R]`` (a string under postponed annotations)."""
    if isinstance(annotation, str):
        return annotation.removeprefix(f"{RpcCall.__name__}[").removesuffix("]")
    return get_args(annotation)[0]
