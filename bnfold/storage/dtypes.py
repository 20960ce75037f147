"""ONNX element types ↔ numpy dtypes ↔ stored bytes: the one place every layer asks.

- ``numpy_dtype(data_type)``: the little-endian numpy dtype of one element (ml_dtypes types for
  bfloat16, float8, float6, float4, int4/uint4, int2/uint2; one unpacked byte each for the
  sub-byte ones).
- ``element_bits``/``stored_nbytes``: how many bytes ``raw_data`` holds for a count of
  elements (sub-byte types are packed, low bits first: ``ceil(count * bits / 8)``).
- ``raw_bytes(array)``: the bytes of ``raw_data`` (or of external data) for an array of any
  of these types, little-endian, packed where ONNX packs. Every write path goes through it:
  the buffer of an ml_dtypes array cannot be cast with ``memoryview.cast`` (the crash of
  issue 22), a ``uint8`` view of the array can.
- ``from_raw(data, data_type, shape)``: the inverse.
- ``is_float_dtype``: the one float-dtype predicate (folds, verification, input generation).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

# Sub-byte types: bits per element (packed into raw_data, low bits first).
_PACKED_BITS: dict[int, int] = {
    onnx.TensorProto.INT4: 4,
    onnx.TensorProto.UINT4: 4,
    onnx.TensorProto.FLOAT4E2M1: 4,
}
for _name, _bits in (("INT2", 2), ("UINT2", 2), ("FLOAT6E2M3", 6), ("FLOAT6E3M2", 6)):
    if hasattr(onnx.TensorProto, _name):  # onnx >= 1.20
        _PACKED_BITS[getattr(onnx.TensorProto, _name)] = _bits

# Types with no fixed-size element (no raw bytes of their own).
_UNSIZED = frozenset({onnx.TensorProto.UNDEFINED, onnx.TensorProto.STRING})


def is_float_dtype(dtype: np.dtype) -> bool:
    """True for float16/32/64 and bfloat16 (ml_dtypes registers bfloat16 with kind ``'V'``).

    (ml_dtypes also gives ``float8_e5m2`` kind ``'f'``; no op bnfold folds into accepts it.)
    """
    return dtype.kind == "f" or dtype.name == "bfloat16"


def numpy_dtype(data_type: int) -> np.dtype:
    """The little-endian numpy dtype of one element of ONNX type ``data_type``."""
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type))
    return dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype


def element_bits(data_type: int) -> int | None:
    """Bits one element takes in ``raw_data``; None for STRING/UNDEFINED/unknown types."""
    if data_type in _PACKED_BITS:
        return _PACKED_BITS[data_type]
    if data_type in _UNSIZED:
        return None
    try:
        return numpy_dtype(data_type).itemsize * 8
    except (KeyError, ValueError, TypeError):  # a type number this onnx does not know
        return None


def is_packed(data_type: int) -> bool:
    """Elements smaller than a byte, several per byte of ``raw_data``."""
    return data_type in _PACKED_BITS


def is_plain(data_type: int) -> bool:
    """``raw_data`` is a plain little-endian array of ``numpy_dtype(data_type)``."""
    bits = element_bits(data_type)
    return bits is not None and bits % 8 == 0


def stored_nbytes(data_type: int, count: int) -> int | None:
    """Bytes of ``raw_data`` for ``count`` elements (None where the type has no fixed size)."""
    bits = element_bits(data_type)
    return None if bits is None else math.ceil(count * bits / 8)


def raw_bytes(array: np.ndarray, data_type: int | None = None) -> memoryview:
    """``array``'s bytes as stored (little-endian, packed for sub-byte types): a flat
    ``uint8`` buffer, which any ``write`` and ``bytes()`` accept.

    ``data_type`` defaults to the ONNX type of ``array.dtype``; without packing, the bytes
    are a view when ``array`` is already contiguous and little-endian.
    """
    if data_type is None:
        data_type = onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
    if is_packed(data_type):
        tensor = numpy_helper.from_array(np.asarray(array, dtype=numpy_dtype(data_type)))
        return memoryview(tensor.raw_data)
    little = np.ascontiguousarray(array, dtype=numpy_dtype(data_type))
    return little.reshape(-1).view(np.uint8).data


def from_raw(data: bytes | memoryview, data_type: int, shape: tuple[int, ...]) -> np.ndarray:
    """The array that ``raw_data`` bytes ``data`` of type ``data_type`` hold (read-only when
    ``data`` is a buffer that numpy can view)."""
    if is_packed(data_type):
        tensor = onnx.TensorProto(data_type=data_type, dims=shape)
        tensor.raw_data = bytes(data)
        return numpy_helper.to_array(tensor)
    return np.frombuffer(data, dtype=numpy_dtype(data_type)).reshape(shape)
