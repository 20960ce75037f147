"""Checks every producer/consumer pattern runs on a layer's weight and bias inputs."""

from __future__ import annotations

import numpy as np
import onnx

from ..engine.constants import describe_not_constant, quantized_source
from ..engine.foldmath import all_finite
from ..engine.graph import GraphView
from ..engine.outcomes import Skip
from ..engine.protocol import node_label
from ..engine.quantized import QDQ_FOLDED, dequantize_source
from ..storage.dtypes import is_float_dtype


def constant_weight(
    view: GraphView, node: onnx.NodeProto, index: int, role: str
) -> np.ndarray | Skip:
    """The constant float tensor at ``node.input[index]``, or why it cannot be rewritten."""
    name = node.input[index] if index < len(node.input) else ""
    if not name:
        return Skip("weight-not-constant", f"{node_label(node)} has no {role}")
    if view.is_overridable(name):
        return view.overridable_skip(name, f"{role} {name!r} of {node_label(node)}")
    quantized = quantized_source(view, name)
    if quantized is not None:
        return Skip(
            "quantized-weight",
            f"{role} {name!r} of {node_label(node)} comes from {quantized.op_type} "
            f"{node_label(quantized)}: folding would dequantize the layer",
        )
    value = view.constant_value(name)
    if value is None:
        return Skip(
            "weight-not-constant",
            f"{role} {name!r} of {node_label(node)} {describe_not_constant(view, name)}",
        )
    if not is_float_dtype(value.dtype):
        return Skip(
            "unsupported-dtype", f"{role} {name!r} of {node_label(node)} has dtype {value.dtype}"
        )
    if not all_finite(value):
        return Skip(
            "param-not-finite", f"{role} {name!r} of {node_label(node)} contains NaN or Inf"
        )
    return value


def optional_bias(view: GraphView, node: onnx.NodeProto, index: int) -> np.ndarray | None | Skip:
    """The constant bias at ``node.input[index]``; None when the layer has none."""
    if index >= len(node.input) or not node.input[index]:
        return None
    return constant_weight(view, node, index, "bias")


def left_to_qdq(view: GraphView, node: onnx.NodeProto, index: int) -> bool:
    """Whether ``node.input[index]`` is computed directly by a DequantizeLinear and a qdq
    pattern (``qdq_bn``) folds into ``node``'s op type: its float pattern says ``NotMine``."""
    name = node.input[index] if index < len(node.input) else ""
    return bool(name) and node.op_type in QDQ_FOLDED and dequantize_source(view, name) is not None
