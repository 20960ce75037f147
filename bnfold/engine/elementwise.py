"""Read ``Add``/``Sub``/``Mul``/``Div`` by a constant as a per-channel affine over one axis.

Exporters write bias adds and whole BatchNormalizations this way (tf2onnx: ``Mul`` then
``Add``). The constant ``c`` acts per channel on a rank-``r`` tensor with channel axis ``a``
when, right-aligned to rank ``r``, every dimension of ``c`` is 1 except dimension ``a``,
which is 1 or ``C``. Then, with ``v`` the per-channel vector of ``c``:

    x + c → (1, v)      x − c → (1, −v)      c − x → (−1, v)
    x · c → (v, 0)      x / c → (1/v, 0)     (``c / x`` is not affine)
"""

from __future__ import annotations

import numpy as np
import onnx

from ..storage.dtypes import is_float_dtype
from .foldmath import Affine
from .graph import GraphView, is_standard
from .outcomes import Skip

ELEMENTWISE_OPS = frozenset({"Add", "Sub", "Mul", "Div"})


def constant_operand(view: GraphView, node: onnx.NodeProto) -> tuple[int, np.ndarray] | None:
    """``(index, value)`` of the single constant operand of a binary op, else None."""
    if node.op_type not in ELEMENTWISE_OPS or not is_standard(node) or len(node.input) != 2:
        return None
    values = [view.constant_value(name) for name in node.input]
    constant = [i for i, v in enumerate(values) if v is not None]
    if len(constant) != 1:
        return None
    index = constant[0]
    value = values[index]
    assert value is not None
    return index, value


def elementwise_affine(
    view: GraphView, node: onnx.NodeProto, *, rank: int, axis: int, channels: int
) -> Affine | Skip | None:
    """The affine ``node`` applies over ``axis`` of its rank-``rank`` data input, or why not.

    None when ``node`` is not a binary op with exactly one constant operand.
    """
    operand = constant_operand(view, node)
    if operand is None:
        return None
    if view.opset < 7:
        return Skip(
            "unsupported-opset",
            f"{node.op_type}-{view.opset} broadcasts by its legacy broadcast/axis rules",
        )
    index, constant = operand
    if not is_float_dtype(constant.dtype):
        return Skip("unsupported-dtype", f"{node.op_type} constant has dtype {constant.dtype}")
    if constant.ndim > rank:
        return Skip(
            "not-per-channel",
            f"{node.op_type} constant of rank {constant.ndim} broadcasts the output up",
        )
    shape = (1,) * (rank - constant.ndim) + tuple(constant.shape)
    for dim_index, dim in enumerate(shape):
        allowed = (1, channels) if dim_index == axis else (1,)
        if dim not in allowed:
            return Skip(
                "not-per-channel",
                f"{node.op_type} constant of shape {list(constant.shape)} does not act per channel on axis {axis}",
            )
    vector = np.broadcast_to(np.asarray(constant, dtype=np.float64).reshape(-1), (channels,)).copy()
    if not np.all(np.isfinite(vector)):
        return Skip("param-not-finite", f"{node.op_type} constant contains NaN or Inf")
    ones, zeros = np.ones(channels), np.zeros(channels)
    if node.op_type == "Add":
        return Affine(ones, vector)
    if node.op_type == "Sub":
        return Affine(ones, -vector) if index == 1 else Affine(-ones, vector)
    if node.op_type == "Mul":
        return Affine(vector, zeros)
    if index == 0:
        return Skip("not-affine", "constant divided by the data is not affine")
    if np.any(vector == 0):
        return Skip("division-by-zero", "Div by a constant that is zero for some channel")
    return Affine(1.0 / vector, zeros)
