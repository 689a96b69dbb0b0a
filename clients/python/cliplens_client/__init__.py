"""Light client for the cliplens gRPC API: grpcio, protobuf and numpy only.

``Client`` (blocking) and ``AsyncClient`` (asyncio) have one method per rpc; the generated stubs
live in ``cliplens_client.v1``::

    with Client("localhost:9000", token=token) as client:
        texts = client.attribute_latents("demo-topk", Path("cat.png"), ["a cat", "a dog"], top_n=5)

A list of addresses, preferred first, fails over on UNAVAILABLE: ``Client(["localhost:9002",
"localhost:9000"])`` (see :class:`FailoverPolicy`).
"""

from cliplens_client.aio import AsyncClient
from cliplens_client.arrays import pack_array, unpack_array
from cliplens_client.client import Client
from cliplens_client.errors import (
    AuthenticationError,
    CliplensClientError,
    DeadlineExceededError,
    InvalidArgumentError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    RpcError,
    UnavailableError,
)
from cliplens_client.inputs import LatentEdit, ObjectKey
from cliplens_client.results import (
    ActivatingInput,
    ClassProbability,
    Decomposition,
    Embeddings,
    HeadDescription,
    HeadDescriptions,
    HeadRanking,
    HeadText,
    LatentAttribution,
    LatentInfo,
    LatentLabel,
    LatentMatch,
    LatentNeighbour,
    LatentSearch,
    LayerContribution,
    ModelInfo,
    RankedHead,
    Reconstruction,
    SaeInfo,
    SparseCodes,
    Steering,
    TextAttribution,
    TopActivations,
)
from cliplens_client.retry import FailoverPolicy, RetryPolicy

__version__ = "0.1.0"
__all__ = [
    "ActivatingInput",
    "AsyncClient",
    "AuthenticationError",
    "ClassProbability",
    "Client",
    "CliplensClientError",
    "DeadlineExceededError",
    "Decomposition",
    "Embeddings",
    "FailoverPolicy",
    "HeadDescription",
    "HeadDescriptions",
    "HeadRanking",
    "HeadText",
    "InvalidArgumentError",
    "InvalidRequestError",
    "LatentAttribution",
    "LatentEdit",
    "LatentInfo",
    "LatentLabel",
    "LatentMatch",
    "LatentNeighbour",
    "LatentSearch",
    "LayerContribution",
    "MalformedResponseError",
    "ModelInfo",
    "NotFoundError",
    "ObjectKey",
    "RankedHead",
    "Reconstruction",
    "RetryPolicy",
    "RpcError",
    "SaeInfo",
    "SparseCodes",
    "Steering",
    "TextAttribution",
    "TopActivations",
    "UnavailableError",
    "pack_array",
    "unpack_array",
]
