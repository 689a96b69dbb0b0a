from cliplens_client.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_SOURCE_UNSPECIFIED: _ClassVar[FeatureSource]
    FEATURE_SOURCE_REDIS: _ClassVar[FeatureSource]
    FEATURE_SOURCE_STORE: _ClassVar[FeatureSource]
FEATURE_SOURCE_UNSPECIFIED: FeatureSource
FEATURE_SOURCE_REDIS: FeatureSource
FEATURE_SOURCE_STORE: FeatureSource

class TopActivationsRequest(_message.Message):
    __slots__ = ("sae_id", "latent", "k")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    latent: int
    k: int
    def __init__(self, sae_id: _Optional[str] = ..., latent: _Optional[int] = ..., k: _Optional[int] = ...) -> None: ...

class TopActivationsResponse(_message.Message):
    __slots__ = ("sae_id", "latent", "inputs", "source", "degraded")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    latent: int
    inputs: _containers.RepeatedCompositeFieldContainer[ActivatingInput]
    source: FeatureSource
    degraded: bool
    def __init__(self, sae_id: _Optional[str] = ..., latent: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[ActivatingInput, _Mapping]]] = ..., source: _Optional[_Union[FeatureSource, str]] = ..., degraded: _Optional[bool] = ...) -> None: ...

class ActivatingInput(_message.Message):
    __slots__ = ("input_id", "activation", "label", "patch")
    INPUT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PATCH_FIELD_NUMBER: _ClassVar[int]
    input_id: str
    activation: float
    label: str
    patch: int
    def __init__(self, input_id: _Optional[str] = ..., activation: _Optional[float] = ..., label: _Optional[str] = ..., patch: _Optional[int] = ...) -> None: ...

class LatentInfoRequest(_message.Message):
    __slots__ = ("sae_id", "latent")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    latent: int
    def __init__(self, sae_id: _Optional[str] = ..., latent: _Optional[int] = ...) -> None: ...

class LatentInfoResponse(_message.Message):
    __slots__ = ("sae_id", "latent", "labels", "alignment", "clarity", "firing_rate", "histogram", "source", "degraded", "label_counts", "neighbours")
    class LabelCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    CLARITY_FIELD_NUMBER: _ClassVar[int]
    FIRING_RATE_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    LABEL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    latent: int
    labels: _containers.RepeatedCompositeFieldContainer[_common_pb2.LatentLabel]
    alignment: float
    clarity: float
    firing_rate: float
    histogram: Histogram
    source: FeatureSource
    degraded: bool
    label_counts: _containers.ScalarMap[str, int]
    neighbours: _containers.RepeatedCompositeFieldContainer[LatentNeighbour]
    def __init__(self, sae_id: _Optional[str] = ..., latent: _Optional[int] = ..., labels: _Optional[_Iterable[_Union[_common_pb2.LatentLabel, _Mapping]]] = ..., alignment: _Optional[float] = ..., clarity: _Optional[float] = ..., firing_rate: _Optional[float] = ..., histogram: _Optional[_Union[Histogram, _Mapping]] = ..., source: _Optional[_Union[FeatureSource, str]] = ..., degraded: _Optional[bool] = ..., label_counts: _Optional[_Mapping[str, int]] = ..., neighbours: _Optional[_Iterable[_Union[LatentNeighbour, _Mapping]]] = ...) -> None: ...

class LatentNeighbour(_message.Message):
    __slots__ = ("latent", "cosine")
    LATENT_FIELD_NUMBER: _ClassVar[int]
    COSINE_FIELD_NUMBER: _ClassVar[int]
    latent: int
    cosine: float
    def __init__(self, latent: _Optional[int] = ..., cosine: _Optional[float] = ...) -> None: ...

class Histogram(_message.Message):
    __slots__ = ("bin_edges", "counts")
    BIN_EDGES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    bin_edges: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, bin_edges: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ...) -> None: ...

class SearchLatentsRequest(_message.Message):
    __slots__ = ("sae_id", "text", "top_n")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    text: str
    top_n: int
    def __init__(self, sae_id: _Optional[str] = ..., text: _Optional[str] = ..., top_n: _Optional[int] = ...) -> None: ...

class SearchLatentsResponse(_message.Message):
    __slots__ = ("sae_id", "matches", "source", "degraded")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    matches: _containers.RepeatedCompositeFieldContainer[LatentMatch]
    source: FeatureSource
    degraded: bool
    def __init__(self, sae_id: _Optional[str] = ..., matches: _Optional[_Iterable[_Union[LatentMatch, _Mapping]]] = ..., source: _Optional[_Union[FeatureSource, str]] = ..., degraded: _Optional[bool] = ...) -> None: ...

class LatentMatch(_message.Message):
    __slots__ = ("latent", "alignment", "labels")
    LATENT_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    latent: int
    alignment: float
    labels: _containers.RepeatedCompositeFieldContainer[_common_pb2.LatentLabel]
    def __init__(self, latent: _Optional[int] = ..., alignment: _Optional[float] = ..., labels: _Optional[_Iterable[_Union[_common_pb2.LatentLabel, _Mapping]]] = ...) -> None: ...
