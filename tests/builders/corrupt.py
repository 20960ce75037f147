"""Known wrong answers for the judge: one folded layer with one output-channel slice off by 1 %.

``corrupt_layer(folded, site)`` finds the linear layer that produces ``site`` in the folded
model (walking back through bias adds and layout ops) and scales one output-channel slice of
its weight by ``factor`` (a BatchNormalization a merge wrote: its scale). A verifier that
passes such a model is fooled.
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

# op -> the axis of its weight (input 1) that holds output channels; a BN a merge wrote
# (``bn-affine``) is corrupted in its scale.
LINEAR = {"Conv": 0, "ConvTranspose": 1, "MatMul": -1, "BatchNormalization": 0}
WALK_BACK = {"Add", "Sub", "Mul", "Div", "Identity", "Reshape", "Transpose", "Flatten", "Squeeze"}


def linear_layer(model: onnx.ModelProto, name: str) -> onnx.NodeProto | None:
    """The Conv/ConvTranspose/Gemm/MatMul whose output reaches ``name`` through bias/layout ops."""
    producer = {out: node for node in model.graph.node for out in node.output}
    initializers = {t.name for t in model.graph.initializer}
    node = producer.get(name)
    while node is not None:
        if node.op_type in LINEAR or node.op_type == "Gemm":
            return node
        if node.op_type not in WALK_BACK:
            return None
        computed = [i for i in node.input if i in producer and i not in initializers]
        node = producer.get(computed[0]) if computed else None
    return None


def _axis(node: onnx.NodeProto) -> int:
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return LINEAR[node.op_type]


def corrupt_layer(
    model: onnx.ModelProto, site: str, factor: float = 1.01, channel: int = 0
) -> onnx.ModelProto:
    """A copy of ``model`` with output channel ``channel`` of ``site``'s layer scaled by ``factor``."""
    node = linear_layer(model, site)
    if node is None:
        raise LookupError(f"no linear layer produces {site!r}")
    weight_name = node.input[1]
    wrong = onnx.ModelProto()
    wrong.CopyFrom(model)
    for tensor in wrong.graph.initializer:
        if tensor.name == weight_name:
            array = numpy_helper.to_array(tensor).copy()
            index: list[slice | int] = [slice(None)] * array.ndim
            index[_axis(node)] = channel
            array[tuple(index)] *= factor
            tensor.CopyFrom(numpy_helper.from_array(array, weight_name))
            return wrong
    for constant in wrong.graph.node:  # exporters keep weights in Constant nodes too
        if constant.op_type == "Constant" and list(constant.output) == [weight_name]:
            for attr in constant.attribute:
                if attr.name == "value":
                    array = numpy_helper.to_array(attr.t).copy()
                    index = [slice(None)] * array.ndim
                    index[_axis(node)] = channel
                    array[tuple(index)] *= factor
                    attr.t.CopyFrom(numpy_helper.from_array(array, attr.t.name))
                    return wrong
    raise LookupError(f"the weight {weight_name!r} of {node.name!r} is not a constant")


def batchnorm_outputs(model: onnx.ModelProto) -> list[str]:
    """The output names of every top-level BatchNormalization, in graph order."""
    return [n.output[0] for n in model.graph.node if n.op_type == "BatchNormalization"]
