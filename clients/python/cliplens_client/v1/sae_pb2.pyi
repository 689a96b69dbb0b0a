from cliplens_client.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SaeInput(_message.Message):
    __slots__ = ("activations", "images")
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    activations: _common_pb2.FloatArray
    images: _common_pb2.ImageBatch
    def __init__(self, activations: _Optional[_Union[_common_pb2.FloatArray, _Mapping]] = ..., images: _Optional[_Union[_common_pb2.ImageBatch, _Mapping]] = ...) -> None: ...

class EncodeRequest(_message.Message):
    __slots__ = ("sae_id", "input", "max_active_per_row")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    MAX_ACTIVE_PER_ROW_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    input: SaeInput
    max_active_per_row: int
    def __init__(self, sae_id: _Optional[str] = ..., input: _Optional[_Union[SaeInput, _Mapping]] = ..., max_active_per_row: _Optional[int] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("sae_id", "batch_shape", "latents")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SHAPE_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    batch_shape: _containers.RepeatedScalarFieldContainer[int]
    latents: _common_pb2.SparseLatents
    def __init__(self, sae_id: _Optional[str] = ..., batch_shape: _Optional[_Iterable[int]] = ..., latents: _Optional[_Union[_common_pb2.SparseLatents, _Mapping]] = ...) -> None: ...

class DecodeRequest(_message.Message):
    __slots__ = ("sae_id", "dense", "sparse")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    DENSE_FIELD_NUMBER: _ClassVar[int]
    SPARSE_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    dense: _common_pb2.FloatArray
    sparse: _common_pb2.SparseLatents
    def __init__(self, sae_id: _Optional[str] = ..., dense: _Optional[_Union[_common_pb2.FloatArray, _Mapping]] = ..., sparse: _Optional[_Union[_common_pb2.SparseLatents, _Mapping]] = ...) -> None: ...

class DecodeResponse(_message.Message):
    __slots__ = ("sae_id", "activations")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    activations: _common_pb2.FloatArray
    def __init__(self, sae_id: _Optional[str] = ..., activations: _Optional[_Union[_common_pb2.FloatArray, _Mapping]] = ...) -> None: ...

class ReconstructRequest(_message.Message):
    __slots__ = ("sae_id", "input", "include_latents")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LATENTS_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    input: SaeInput
    include_latents: bool
    def __init__(self, sae_id: _Optional[str] = ..., input: _Optional[_Union[SaeInput, _Mapping]] = ..., include_latents: _Optional[bool] = ...) -> None: ...

class ReconstructResponse(_message.Message):
    __slots__ = ("sae_id", "batch_shape", "reconstruction", "latents", "error")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SHAPE_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    batch_shape: _containers.RepeatedScalarFieldContainer[int]
    reconstruction: _common_pb2.FloatArray
    latents: _common_pb2.SparseLatents
    error: ReconstructionError
    def __init__(self, sae_id: _Optional[str] = ..., batch_shape: _Optional[_Iterable[int]] = ..., reconstruction: _Optional[_Union[_common_pb2.FloatArray, _Mapping]] = ..., latents: _Optional[_Union[_common_pb2.SparseLatents, _Mapping]] = ..., error: _Optional[_Union[ReconstructionError, _Mapping]] = ...) -> None: ...

class ReconstructionError(_message.Message):
    __slots__ = ("mse", "nmse", "explained_variance", "row_nmse")
    MSE_FIELD_NUMBER: _ClassVar[int]
    NMSE_FIELD_NUMBER: _ClassVar[int]
    EXPLAINED_VARIANCE_FIELD_NUMBER: _ClassVar[int]
    ROW_NMSE_FIELD_NUMBER: _ClassVar[int]
    mse: float
    nmse: float
    explained_variance: float
    row_nmse: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, mse: _Optional[float] = ..., nmse: _Optional[float] = ..., explained_variance: _Optional[float] = ..., row_nmse: _Optional[_Iterable[float]] = ...) -> None: ...
