from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("id", "arch", "description", "embed_dim", "image_size", "n_layers", "patch_grid")
    ID_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EMBED_DIM_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    N_LAYERS_FIELD_NUMBER: _ClassVar[int]
    PATCH_GRID_FIELD_NUMBER: _ClassVar[int]
    id: str
    arch: str
    description: str
    embed_dim: int
    image_size: int
    n_layers: int
    patch_grid: int
    def __init__(self, id: _Optional[str] = ..., arch: _Optional[str] = ..., description: _Optional[str] = ..., embed_dim: _Optional[int] = ..., image_size: _Optional[int] = ..., n_layers: _Optional[int] = ..., patch_grid: _Optional[int] = ...) -> None: ...

class ListSaesRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class ListSaesResponse(_message.Message):
    __slots__ = ("saes",)
    SAES_FIELD_NUMBER: _ClassVar[int]
    saes: _containers.RepeatedCompositeFieldContainer[SaeInfo]
    def __init__(self, saes: _Optional[_Iterable[_Union[SaeInfo, _Mapping]]] = ...) -> None: ...

class SaeInfo(_message.Message):
    __slots__ = ("id", "model_id", "site", "arch", "d_in", "d_sae", "dataset_id", "metrics", "has_feature_index", "hyperparameters")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class HyperparametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    D_IN_FIELD_NUMBER: _ClassVar[int]
    D_SAE_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    HAS_FEATURE_INDEX_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    id: str
    model_id: str
    site: str
    arch: str
    d_in: int
    d_sae: int
    dataset_id: str
    metrics: _containers.ScalarMap[str, float]
    has_feature_index: bool
    hyperparameters: _containers.ScalarMap[str, float]
    def __init__(self, id: _Optional[str] = ..., model_id: _Optional[str] = ..., site: _Optional[str] = ..., arch: _Optional[str] = ..., d_in: _Optional[int] = ..., d_sae: _Optional[int] = ..., dataset_id: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., has_feature_index: _Optional[bool] = ..., hyperparameters: _Optional[_Mapping[str, float]] = ...) -> None: ...
