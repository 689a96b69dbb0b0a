"""The two transports of the API classes, generated from the services' protobuf descriptors.

- The Serve ingress: Serve's gRPC proxy calls the ingress method named like the rpc, so
  :func:`with_rpc_methods` adds one method per rpc to the ingress class.
- The direct ports: :func:`grpc_handler` builds a ``grpc.aio`` handler for a service.

Each rpc ``Name`` of a service is answered by the method ``name`` (snake case) of the API object
serving it, and every call is framed by :func:`cliplens.serve.rpc_frame.answer` (auth, deadline,
status code, latency metric): adding an rpc means adding it to the proto and one API method.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from cliplens.serve.auth import TokenAuth
from cliplens.serve.rpc_frame import CallContext, answer

T = TypeVar("T")
Handler = Callable[[Message], Awaitable[Message]]


class ServiceApi(Protocol):
    """An API class: answers every rpc of ``service`` with a method named after it."""

    @property
    def service(self) -> ServiceDescriptor: ...


def snake_case(name: str) -> str:
    """``AttributeLatents`` -> ``attribute_latents``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def handler_of(api: Any, method: MethodDescriptor) -> Handler:
    """The API method answering ``method``; raises naming the missing one."""
    handler = getattr(api, snake_case(method.name), None)
    if handler is None:
        raise TypeError(f"{type(api).__name__} lacks {snake_case(method.name)}() for rpc {method.full_name}")
    return handler


def with_rpc_methods(services: Sequence[ServiceDescriptor]) -> Callable[[type[T]], type[T]]:
    """Class decorator for the Serve ingress: one method per rpc of ``services``, named like it.

    An instance provides ``auth`` (:class:`TokenAuth`) and ``apis`` (service full name -> API object).
    """

    def decorate(cls: type[T]) -> type[T]:
        for service in services:
            for method in service.methods:
                if hasattr(cls, method.name):
                    raise TypeError(f"{cls.__name__}.{method.name} exists; rpc names must be unique")
                setattr(cls, method.name, _ingress_method(service.full_name, method.name))
        return cls

    return decorate


def _ingress_method(service: str, rpc: str) -> Callable[..., Awaitable[Message]]:
    # Only names in the closure: Serve pickles the ingress class by value, descriptors do not pickle.
    async def method(self: Any, request: Message, grpc_context: CallContext) -> Message:
        return await call_api(self.apis[service], self.auth, service, rpc, request, grpc_context)

    method.__name__ = method.__qualname__ = rpc
    method.__doc__ = f"{service}.{rpc}, answered by the API's {snake_case(rpc)}()."
    return method


async def call_api(
    api: Any, auth: TokenAuth, service: str, rpc: str, request: Message, context: CallContext
) -> Message:
    """Answer rpc ``service.rpc`` with ``api``, framed by :func:`answer`."""
    # From the API's own descriptor: a vendored protocol's stubs live outside the default pool.
    method = api.service.methods_by_name[rpc]
    handler = handler_of(api, method)
    return await answer(rpc, auth, context, GetMessageClass(method.output_type), lambda: handler(request))


def grpc_handler(api: ServiceApi, auth: TokenAuth) -> grpc.GenericRpcHandler:
    """A ``grpc.aio`` handler serving every rpc of ``api.service`` with ``api``."""
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            _direct_method(method, handler_of(api, method), auth),
            request_deserializer=GetMessageClass(method.input_type).FromString,
            response_serializer=GetMessageClass(method.output_type).SerializeToString,
        )
        for method in api.service.methods
    }
    return grpc.method_handlers_generic_handler(api.service.full_name, handlers)


def _direct_method(
    method: MethodDescriptor, handler: Handler, auth: TokenAuth
) -> Callable[[Message, grpc.aio.ServicerContext], Awaitable[Message]]:
    response = GetMessageClass(method.output_type)

    async def rpc(request: Message, context: grpc.aio.ServicerContext) -> Message:
        return await answer(method.name, auth, context, response, lambda: handler(request))

    return rpc
