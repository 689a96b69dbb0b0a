"""Packing numpy arrays into ``FloatArray`` messages and back."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

from cliplens_client.errors import InvalidRequestError, MalformedResponseError
from cliplens_client.v1 import common_pb2

FloatDType = Literal["float32", "float16"]

# Wire dtype -> little-endian numpy dtype.
WIRE_DTYPES: dict[int, np.dtype[np.floating]] = {
    common_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    common_pb2.DTYPE_FLOAT16: np.dtype("<f2"),
}
DTYPE_ENUMS: dict[str, common_pb2.DType] = {
    "float32": common_pb2.DTYPE_FLOAT32,
    "float16": common_pb2.DTYPE_FLOAT16,
}


def dtype_enum(dtype: str) -> common_pb2.DType:
    """The wire enum of ``"float32"`` or ``"float16"``."""
    try:
        return DTYPE_ENUMS[dtype]
    except KeyError:
        raise InvalidRequestError(f"dtype must be one of {', '.join(DTYPE_ENUMS)}, got {dtype!r}") from None


def pack_array(values: npt.ArrayLike, dtype: FloatDType | None = None) -> common_pb2.FloatArray:
    """Pack real numbers into a ``FloatArray``.

    ``dtype`` picks the wire type; by default float16 arrays stay float16 and everything else
    becomes float32.
    """
    array = np.asarray(values)
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise InvalidRequestError(f"expected an array of real numbers, got dtype {array.dtype}")
    if dtype is None:
        dtype = "float16" if array.dtype == np.float16 else "float32"
    wire = dtype_enum(dtype)
    data = np.ascontiguousarray(array, dtype=WIRE_DTYPES[wire]).tobytes()
    return common_pb2.FloatArray(shape=array.shape, dtype=wire, data=data)


def unpack_array(message: common_pb2.FloatArray) -> npt.NDArray[np.floating]:
    """A writable numpy array (native byte order) holding the message's values."""
    if message.dtype not in WIRE_DTYPES:
        raise MalformedResponseError(f"FloatArray has unsupported dtype {message.dtype}")
    shape = tuple(int(size) for size in message.shape)
    if any(size < 0 for size in shape):
        raise MalformedResponseError(f"FloatArray has a negative dimension in shape {shape}")
    wire_dtype = WIRE_DTYPES[message.dtype]
    expected = math.prod(shape) * wire_dtype.itemsize
    if len(message.data) != expected:
        raise MalformedResponseError(
            f"FloatArray of shape {shape} and dtype {wire_dtype.name} needs {expected} bytes, got {len(message.data)}"
        )
    return np.frombuffer(message.data, dtype=wire_dtype).reshape(shape).astype(wire_dtype.newbyteorder("="))
