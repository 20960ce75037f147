"""Walk back from a BatchNormalization to the linear layer that computes its input.

Between the two there may be per-channel constant ops (``Add``/``Sub``/``Mul``/``Div``; an
exporter's bias add or a Mul+Add form of a BN) and, after them, layout ops
(``Transpose``/``Reshape``/``Flatten``/``Squeeze``/``Unsqueeze``). Every tensor on the way
must be read by the next node alone and must not be a graph output: folding removes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from ..elementwise import constant_operand
from ..graph import GraphView
from ..outcomes import Skip
from .base import node_label

LINEAR_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze"})


@dataclass
class Chain:
    """``linear → elementwise… → layout… → BN``, each list in data-flow order."""

    linear: onnx.NodeProto
    elementwise: list[onnx.NodeProto] = field(default_factory=list)
    layout: list[onnx.NodeProto] = field(default_factory=list)

    @property
    def through(self) -> list[str]:
        return [node.op_type for node in [*self.elementwise, *self.layout]]


def walk_to_linear(view: GraphView, bn: onnx.NodeProto) -> Chain | Skip:
    """The chain from the linear producer of ``bn.input[0]`` to ``bn``, or why there is none."""
    name, reader = bn.input[0], bn
    elementwise: list[onnx.NodeProto] = []
    layout: list[onnx.NodeProto] = []
    while True:
        if view.is_graph_output(name):
            return Skip(
                "producer-output-is-graph-output", f"{name!r} is a graph output and must stay"
            )
        readers = view.consumer_count(name)
        if view.only_consumer(name) is not reader:
            return Skip("producer-output-shared", f"{name!r} is read by {readers} nodes")
        node = view.producer.get(name)
        if node is None:
            where = "a graph input" if name in view.graph_inputs else "a constant"
            return Skip("no-linear-producer", f"input {name!r} is {where}")
        if node.domain not in ("", "ai.onnx"):
            return Skip(
                "no-linear-producer", f"input comes from custom op {node.domain}.{node.op_type}"
            )
        if node.op_type in LINEAR_OPS:
            return Chain(node, elementwise, layout)
        operand = constant_operand(view, node)
        if operand is not None:
            elementwise.insert(0, node)
            name = node.input[1 - operand[0]]
        elif node.op_type in LAYOUT_OPS:
            if elementwise:
                # A constant after a layout op broadcasts in the new layout: not traced.
                return Skip(
                    "unsupported-chain", f"constant {elementwise[0].op_type} follows {node.op_type}"
                )
            layout.insert(0, node)
            name = node.input[0]
        else:
            return Skip("no-linear-producer", f"input comes from {node.op_type} {node_label(node)}")
        reader = node
