from cliplens_client.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedImagesRequest(_message.Message):
    __slots__ = ("model_id", "images", "normalize", "dtype")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    normalize: bool
    dtype: _common_pb2.DType
    def __init__(self, model_id: _Optional[str] = ..., images: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ..., normalize: _Optional[bool] = ..., dtype: _Optional[_Union[_common_pb2.DType, str]] = ...) -> None: ...

class EmbedImagesResponse(_message.Message):
    __slots__ = ("model_id", "embeddings")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    embeddings: _common_pb2.FloatArray
    def __init__(self, model_id: _Optional[str] = ..., embeddings: _Optional[_Union[_common_pb2.FloatArray, _Mapping]] = ...) -> None: ...

class EmbedTextsRequest(_message.Message):
    __slots__ = ("model_id", "texts", "normalize", "dtype")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    normalize: bool
    dtype: _common_pb2.DType
    def __init__(self, model_id: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., normalize: _Optional[bool] = ..., dtype: _Optional[_Union[_common_pb2.DType, str]] = ...) -> None: ...

class EmbedTextsResponse(_message.Message):
    __slots__ = ("model_id", "embeddings")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    embeddings: _common_pb2.FloatArray
    def __init__(self, model_id: _Optional[str] = ..., embeddings: _Optional[_Union[_common_pb2.FloatArray, _Mapping]] = ...) -> None: ...
