from cliplens_client.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EditOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EDIT_OP_UNSPECIFIED: _ClassVar[EditOp]
    EDIT_OP_ADD: _ClassVar[EditOp]
    EDIT_OP_SUBTRACT: _ClassVar[EditOp]
    EDIT_OP_CLAMP: _ClassVar[EditOp]
EDIT_OP_UNSPECIFIED: EditOp
EDIT_OP_ADD: EditOp
EDIT_OP_SUBTRACT: EditOp
EDIT_OP_CLAMP: EditOp

class AttributeLatentsRequest(_message.Message):
    __slots__ = ("sae_id", "image", "texts", "top_n", "include_patch_maps")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PATCH_MAPS_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    image: _common_pb2.Image
    texts: _containers.RepeatedScalarFieldContainer[str]
    top_n: int
    include_patch_maps: bool
    def __init__(self, sae_id: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., texts: _Optional[_Iterable[str]] = ..., top_n: _Optional[int] = ..., include_patch_maps: _Optional[bool] = ...) -> None: ...

class AttributeLatentsResponse(_message.Message):
    __slots__ = ("sae_id", "texts", "patch_grid")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    PATCH_GRID_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    texts: _containers.RepeatedCompositeFieldContainer[TextAttribution]
    patch_grid: int
    def __init__(self, sae_id: _Optional[str] = ..., texts: _Optional[_Iterable[_Union[TextAttribution, _Mapping]]] = ..., patch_grid: _Optional[int] = ...) -> None: ...

class TextAttribution(_message.Message):
    __slots__ = ("text", "score", "latents", "error_attribution", "error_share")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_SHARE_FIELD_NUMBER: _ClassVar[int]
    text: str
    score: float
    latents: _containers.RepeatedCompositeFieldContainer[LatentAttribution]
    error_attribution: float
    error_share: float
    def __init__(self, text: _Optional[str] = ..., score: _Optional[float] = ..., latents: _Optional[_Iterable[_Union[LatentAttribution, _Mapping]]] = ..., error_attribution: _Optional[float] = ..., error_share: _Optional[float] = ...) -> None: ...

class LatentAttribution(_message.Message):
    __slots__ = ("latent", "activation", "attribution", "labels", "patch_map")
    LATENT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PATCH_MAP_FIELD_NUMBER: _ClassVar[int]
    latent: int
    activation: float
    attribution: float
    labels: _containers.RepeatedCompositeFieldContainer[_common_pb2.LatentLabel]
    patch_map: _common_pb2.FloatArray
    def __init__(self, latent: _Optional[int] = ..., activation: _Optional[float] = ..., attribution: _Optional[float] = ..., labels: _Optional[_Iterable[_Union[_common_pb2.LatentLabel, _Mapping]]] = ..., patch_map: _Optional[_Union[_common_pb2.FloatArray, _Mapping]] = ...) -> None: ...

class DecomposeRequest(_message.Message):
    __slots__ = ("model_id", "image", "text")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    image: _common_pb2.Image
    text: str
    def __init__(self, model_id: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., text: _Optional[str] = ...) -> None: ...

class DecomposeResponse(_message.Message):
    __slots__ = ("model_id", "score", "embedding_contribution", "layers", "patch_heatmap")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    PATCH_HEATMAP_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    score: float
    embedding_contribution: float
    layers: _containers.RepeatedCompositeFieldContainer[LayerContribution]
    patch_heatmap: _common_pb2.FloatArray
    def __init__(self, model_id: _Optional[str] = ..., score: _Optional[float] = ..., embedding_contribution: _Optional[float] = ..., layers: _Optional[_Iterable[_Union[LayerContribution, _Mapping]]] = ..., patch_heatmap: _Optional[_Union[_common_pb2.FloatArray, _Mapping]] = ...) -> None: ...

class LayerContribution(_message.Message):
    __slots__ = ("layer", "attention", "mlp", "heads")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    MLP_FIELD_NUMBER: _ClassVar[int]
    HEADS_FIELD_NUMBER: _ClassVar[int]
    layer: int
    attention: float
    mlp: float
    heads: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, layer: _Optional[int] = ..., attention: _Optional[float] = ..., mlp: _Optional[float] = ..., heads: _Optional[_Iterable[float]] = ...) -> None: ...

class LatentEdit(_message.Message):
    __slots__ = ("latent", "op", "value")
    LATENT_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    latent: int
    op: EditOp
    value: float
    def __init__(self, latent: _Optional[int] = ..., op: _Optional[_Union[EditOp, str]] = ..., value: _Optional[float] = ...) -> None: ...

class SteerRequest(_message.Message):
    __slots__ = ("sae_id", "image", "edits", "class_names")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EDITS_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    image: _common_pb2.Image
    edits: _containers.RepeatedCompositeFieldContainer[LatentEdit]
    class_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sae_id: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., edits: _Optional[_Iterable[_Union[LatentEdit, _Mapping]]] = ..., class_names: _Optional[_Iterable[str]] = ...) -> None: ...

class SteerResponse(_message.Message):
    __slots__ = ("sae_id", "original_embedding", "steered_embedding", "classes")
    SAE_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    STEERED_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    sae_id: str
    original_embedding: _common_pb2.FloatArray
    steered_embedding: _common_pb2.FloatArray
    classes: _containers.RepeatedCompositeFieldContainer[ClassProbability]
    def __init__(self, sae_id: _Optional[str] = ..., original_embedding: _Optional[_Union[_common_pb2.FloatArray, _Mapping]] = ..., steered_embedding: _Optional[_Union[_common_pb2.FloatArray, _Mapping]] = ..., classes: _Optional[_Iterable[_Union[ClassProbability, _Mapping]]] = ...) -> None: ...

class ClassProbability(_message.Message):
    __slots__ = ("class_name", "before", "after")
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    class_name: str
    before: float
    after: float
    def __init__(self, class_name: _Optional[str] = ..., before: _Optional[float] = ..., after: _Optional[float] = ...) -> None: ...

class DescribeHeadsRequest(_message.Message):
    __slots__ = ("model_id", "pool", "per_head", "layers")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    PER_HEAD_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    pool: _containers.RepeatedScalarFieldContainer[str]
    per_head: int
    layers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, model_id: _Optional[str] = ..., pool: _Optional[_Iterable[str]] = ..., per_head: _Optional[int] = ..., layers: _Optional[_Iterable[int]] = ...) -> None: ...

class DescribeHeadsResponse(_message.Message):
    __slots__ = ("model_id", "n_images", "heads", "cached")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    N_IMAGES_FIELD_NUMBER: _ClassVar[int]
    HEADS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    n_images: int
    heads: _containers.RepeatedCompositeFieldContainer[HeadDescription]
    cached: bool
    def __init__(self, model_id: _Optional[str] = ..., n_images: _Optional[int] = ..., heads: _Optional[_Iterable[_Union[HeadDescription, _Mapping]]] = ..., cached: _Optional[bool] = ...) -> None: ...

class HeadDescription(_message.Message):
    __slots__ = ("layer", "head", "descriptions", "variance_explained", "variance")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_EXPLAINED_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_FIELD_NUMBER: _ClassVar[int]
    layer: int
    head: int
    descriptions: _containers.RepeatedCompositeFieldContainer[HeadText]
    variance_explained: float
    variance: float
    def __init__(self, layer: _Optional[int] = ..., head: _Optional[int] = ..., descriptions: _Optional[_Iterable[_Union[HeadText, _Mapping]]] = ..., variance_explained: _Optional[float] = ..., variance: _Optional[float] = ...) -> None: ...

class HeadText(_message.Message):
    __slots__ = ("text", "variance_explained")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_EXPLAINED_FIELD_NUMBER: _ClassVar[int]
    text: str
    variance_explained: float
    def __init__(self, text: _Optional[str] = ..., variance_explained: _Optional[float] = ...) -> None: ...

class RankHeadsRequest(_message.Message):
    __slots__ = ("model_id", "dataset", "class_names", "max_images", "top_n")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dataset: str
    class_names: _containers.RepeatedScalarFieldContainer[str]
    max_images: int
    top_n: int
    def __init__(self, model_id: _Optional[str] = ..., dataset: _Optional[str] = ..., class_names: _Optional[_Iterable[str]] = ..., max_images: _Optional[int] = ..., top_n: _Optional[int] = ...) -> None: ...

class RankHeadsResponse(_message.Message):
    __slots__ = ("model_id", "n_images", "accuracy", "heads", "cached", "class_names")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    N_IMAGES_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    HEADS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    n_images: int
    accuracy: float
    heads: _containers.RepeatedCompositeFieldContainer[RankedHead]
    cached: bool
    class_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_id: _Optional[str] = ..., n_images: _Optional[int] = ..., accuracy: _Optional[float] = ..., heads: _Optional[_Iterable[_Union[RankedHead, _Mapping]]] = ..., cached: _Optional[bool] = ..., class_names: _Optional[_Iterable[str]] = ...) -> None: ...

class RankedHead(_message.Message):
    __slots__ = ("layer", "head", "accuracy", "accuracy_drop")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_DROP_FIELD_NUMBER: _ClassVar[int]
    layer: int
    head: int
    accuracy: float
    accuracy_drop: float
    def __init__(self, layer: _Optional[int] = ..., head: _Optional[int] = ..., accuracy: _Optional[float] = ..., accuracy_drop: _Optional[float] = ...) -> None: ...
