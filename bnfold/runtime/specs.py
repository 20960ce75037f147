"""What one graph input is: its element type, declared shape, and the spec verify feeds it.

``dim_value <= 0`` is treated as a symbolic (unknown) dim: some exporters (paddle2onnx) write
``-1`` for "dynamic", and onnxruntime accepts any size there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..errors import UsageError
from ..storage.dtypes import is_float_dtype

# The one float-dtype predicate (bnfold.storage.dtypes), under the name this package uses.
is_floating = is_float_dtype

# Element types verify can feed through onnxruntime's Python API.
SUPPORTED_TYPES: frozenset[int] = frozenset(
    {
        TensorProto.FLOAT,
        TensorProto.DOUBLE,
        TensorProto.FLOAT16,
        TensorProto.BFLOAT16,
        TensorProto.INT8,
        TensorProto.INT16,
        TensorProto.INT32,
        TensorProto.INT64,
        TensorProto.UINT8,
        TensorProto.UINT16,
        TensorProto.UINT32,
        TensorProto.UINT64,
        TensorProto.BOOL,
        TensorProto.STRING,
    }
)


@dataclass
class InputSpec:
    """What to feed one graph input: dtype, concrete shape, and the value range used.

    ``low``/``high`` is the half-open range ``[low, high)``; None for floats means N(0, 1).
    ``declared_shape`` is the model's declaration (ints, symbol names, or None for unknown).
    """

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    low: float | None
    high: float | None
    declared_shape: tuple[int | str | None, ...] | None = None
    range_source: str = "default"


def elem_type_name(elem_type: int) -> str:
    try:
        return str(TensorProto.DataType.Name(elem_type)).lower()
    except ValueError:
        return f"type {elem_type}"


def numpy_dtype(elem_type: int, name: str) -> np.dtype:
    """The numpy dtype fed for ``elem_type``, or ``UsageError`` when verify cannot feed it."""
    if elem_type not in SUPPORTED_TYPES:
        raise UsageError(
            f"input {name!r} has element type {elem_type_name(elem_type)}, which verify cannot feed",
            hint="supported: float16/32/64, bfloat16, int8-64, uint8-64, bool, string",
        )
    if elem_type == TensorProto.STRING:
        return np.dtype(np.str_)
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are fed at run time (initializers with a default are excluded)."""
    initializers = {t.name for t in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in initializers]


def declared_shape(value_info: onnx.ValueInfoProto) -> tuple[int | str | None, ...] | None:
    """Dims as ints (static), strings (symbolic) or None (unknown); None if rank is unknown.

    A ``dim_value`` of 0 or less is unknown (None): ``-1`` is an exporter's "dynamic".
    """
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def fmt_shape(shape: Iterable[int]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def fmt_declared(shape: Iterable[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
