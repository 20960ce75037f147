"""MatMul → BN, where the BN's channel axis provably is the weight's output axis.

``Y = X·W`` with a constant 2-D ``W [K, N]``: the features are Y's last axis. BN normalises
axis 1 of its input, so the fold is exact only when that axis, followed back through any
Transpose/Reshape between them, lands on Y's last axis (``layout.trace_axis_back``); a 3-D
``Y [B, T, N]`` straight into BN normalises T and is refused. Then

    s·(X·W + b) + t = X·(W ⊙ s) + (s·b + t)

MatMul has no bias input: the new bias is one ``Add`` right after it (none when it is zero),
which onnxruntime fuses with the MatMul. Spec: https://onnx.ai/onnx/operators/onnx__MatMul.html
"""

from __future__ import annotations

import numpy as np
import onnx

from ..editor import GraphEditor
from ..foldmath import scale_along
from ..outcomes import Skip
from .base import FoldContext, node_label
from .layer_checks import constant_weight
from .producer import Layer, ProducerFold, tensor_base


class MatMulBatchNorm(ProducerFold):
    name = "matmul-bn"
    op_type = "MatMul"
    bias_index = None

    def inspect(self, ctx: FoldContext, node: onnx.NodeProto) -> Layer | Skip:
        if ctx.view.constant_value(node.input[0]) is not None:
            return Skip(
                "weight-not-constant", f"{node_label(node)} multiplies a constant by a run-time B"
            )
        weight = constant_weight(ctx.view, node, 1, "weight")
        if isinstance(weight, Skip):
            return weight
        if weight.ndim != 2:
            return Skip(
                "unsupported-weight-rank",
                f"{node_label(node)} weight has rank {weight.ndim}, not 2",
            )
        shapes = ctx.shapes()
        rank = _rank(shapes.get(node.output[0])) or _rank(shapes.get(node.input[0]))
        if rank is None:
            return Skip("axis-not-proven", f"rank of {node_label(node)}'s input is unknown")
        rank = max(rank, 2) if rank >= 2 else 1
        return Layer(
            node, weight, None, int(weight.shape[1]), output_rank=rank, channel_axis=rank - 1
        )

    def scaled_weight(self, layer: Layer, scale: np.ndarray) -> np.ndarray:
        return scale_along(layer.weight, scale, 1)

    def write_bias(
        self, editor: GraphEditor, layer: Layer, bias: np.ndarray, bn: onnx.NodeProto
    ) -> onnx.NodeProto:
        """Add ``b'`` after the MatMul in a new ``Add`` (named after the BN it replaces)."""
        if not np.any(bias):
            return layer.node
        bias_name = editor.names.new(tensor_base(layer.node, "bias"))
        editor.add_constant(bias_name, bias, before=layer.node)
        output = editor.new_tensor_like(f"{layer.node.output[0]}_biased", layer.node.output[0])
        add = onnx.helper.make_node(
            "Add",
            [layer.node.output[0], bias_name],
            [output],
            name=editor.names.new(f"{bn.name or 'BatchNormalization'}_bias"),
        )
        return editor.insert_after(layer.node, add)


def _rank(shape: tuple[int | str | None, ...] | None) -> int | None:
    return None if shape is None else len(shape)
