"""Packing numpy arrays into FloatArray messages and back."""

from __future__ import annotations

import numpy as np
import pytest

from cliplens_client import InvalidRequestError, MalformedResponseError, pack_array, unpack_array
from cliplens_client.v1 import common_pb2


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4), (0, 7)])
def test_round_trip_keeps_values_shape_and_dtype(dtype: str, shape: tuple[int, ...]) -> None:
    values = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    message = pack_array(values)
    restored = unpack_array(common_pb2.FloatArray.FromString(message.SerializeToString()))
    assert restored.dtype == np.dtype(dtype)
    assert restored.shape == shape
    np.testing.assert_array_equal(restored, values)
    assert restored.flags.writeable


def test_non_float32_inputs_are_packed_as_float32_unless_told() -> None:
    assert unpack_array(pack_array(np.arange(6, dtype=np.float64).reshape(2, 3))).dtype == np.float32
    assert unpack_array(pack_array([[1, 2], [3, 4]])).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    half = unpack_array(pack_array(np.ones(3, dtype=np.float32), dtype="float16"))
    assert half.dtype == np.float16


def test_big_endian_and_strided_inputs_pack_little_endian() -> None:
    values = np.arange(12, dtype=">f4").reshape(3, 4)[:, ::2]
    message = pack_array(values)
    assert message.data == np.ascontiguousarray(values, dtype="<f4").tobytes()
    np.testing.assert_array_equal(unpack_array(message), values)


@pytest.mark.parametrize("bad", [np.array([1 + 2j]), np.array([True]), np.array(["a"])])
def test_non_real_inputs_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(InvalidRequestError, match="real numbers"):
        pack_array(bad)


def test_unknown_wire_dtype_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="dtype must be one of"):
        pack_array(np.ones(2), dtype="float64")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (
            common_pb2.FloatArray(shape=[2, 2], dtype=common_pb2.DTYPE_FLOAT32, data=b"\0" * 12),
            "needs 16 bytes",
        ),
        (
            common_pb2.FloatArray(shape=[1], dtype=common_pb2.DTYPE_UNSPECIFIED, data=b"\0" * 4),
            "unsupported dtype",
        ),
        (common_pb2.FloatArray(shape=[-1], dtype=common_pb2.DTYPE_FLOAT32), "negative dimension"),
    ],
)
def test_malformed_messages_are_refused(message: common_pb2.FloatArray, problem: str) -> None:
    with pytest.raises(MalformedResponseError, match=problem):
        unpack_array(message)
