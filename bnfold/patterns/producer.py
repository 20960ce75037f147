"""Fold a per-channel affine into the linear layer that produces its input.

For ``y = W x + b`` followed by constant per-channel ops and a BN, all composed into one
affine ``s·y + t`` over the layer's output channel axis:

    W' = s ⊙ W   (output-channel slices of W scaled by s)
    b' = s · b + t

Subclasses say where a layer keeps W and b and which weight axis holds its output channels;
this module does the checklist, the composition and the graph edit once for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ..editor import GraphEditor
from ..elementwise import elementwise_affine
from ..foldmath import Affine, round_to
from ..layout import trace_axis_back
from ..outcomes import Fold, Skip
from .base import FoldContext, Plan, node_label
from .chain import Chain, walk_to_linear

BN_CHANNEL_AXIS = 1


@dataclass
class Layer:
    """What a producer pattern needs to know about one linear node."""

    node: onnx.NodeProto
    weight: np.ndarray
    bias: np.ndarray | None
    channels: int
    output_rank: int | None
    channel_axis: int


class ProducerFold:
    """Base of the producer patterns; subclasses implement ``inspect`` and ``scaled_weight``."""

    name = "producer"
    op_type = ""
    weight_index = 1
    bias_index: int | None = 2

    # ---- what subclasses provide -------------------------------------------------------
    def inspect(self, ctx: FoldContext, node: onnx.NodeProto) -> Layer | Skip:
        raise NotImplementedError

    def scaled_weight(self, layer: Layer, scale: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def new_bias(self, layer: Layer, affine: Affine) -> np.ndarray:
        """``b' = s·b + t`` (``t`` alone without a bias)."""
        if layer.bias is None:
            return affine.shift
        return affine.scale * np.asarray(layer.bias, dtype=np.float64).reshape(-1) + affine.shift

    def write_bias(
        self, editor: GraphEditor, layer: Layer, bias: np.ndarray, bn: onnx.NodeProto
    ) -> onnx.NodeProto:
        """Store ``b'``; return the node whose output now carries ``s·y + t`` (the layer itself)."""
        assert self.bias_index is not None
        editor.set_constant(layer.node, self.bias_index, bias, tensor_base(layer.node, "bias"))
        return layer.node

    # ---- the shared checklist ----------------------------------------------------------
    def match(self, ctx: FoldContext, bn: onnx.NodeProto, affine: Affine) -> Plan | Skip | None:
        chain = walk_to_linear(ctx.view, bn)
        if isinstance(chain, Skip):
            return chain
        if chain.linear.op_type != self.op_type:
            return None
        layer = self.inspect(ctx, chain.linear)
        if isinstance(layer, Skip):
            return layer
        if layer.channels != affine.channels:
            return Skip(
                "channel-mismatch",
                f"{node_label(layer.node)} has {layer.channels} output channels, the BN {affine.channels}",
            )
        axis = _trace_channel_axis(ctx, chain)
        if isinstance(axis, Skip):
            return axis
        if axis != layer.channel_axis:
            return Skip(
                "channel-axis-mismatch",
                f"BN normalises axis {axis} of {node_label(layer.node)}'s output, its channels are on axis "
                f"{layer.channel_axis}",
            )
        total = Affine.identity(layer.channels)
        for node in chain.elementwise:
            if layer.output_rank is None:
                return Skip(
                    "axis-not-proven", f"rank of {node_label(layer.node)}'s output is unknown"
                )
            step = elementwise_affine(
                ctx.view,
                node,
                rank=layer.output_rank,
                axis=layer.channel_axis,
                channels=layer.channels,
            )
            if step is None or isinstance(step, Skip):
                return step or Skip(
                    "not-per-channel", f"{node_label(node)} is not a per-channel constant op"
                )
            total = total.then(step)
        total = total.then(affine)
        return self._plan(ctx, bn, chain, layer, total)

    def _plan(
        self, ctx: FoldContext, bn: onnx.NodeProto, chain: Chain, layer: Layer, total: Affine
    ) -> Plan | Skip:
        dtype = layer.weight.dtype
        weight = round_to(self.scaled_weight(layer, total.scale), dtype)
        try:
            bias = round_to(self.new_bias(layer, total), dtype)
        except ValueError as exc:
            return Skip(
                "param-shape-mismatch",
                f"bias of {node_label(layer.node)} does not broadcast: {exc}",
            )
        for rounded, what in ((weight, "weight"), (bias, "bias")):
            if not np.all(np.isfinite(rounded.value.astype(np.float64))):
                return Skip("overflow", f"folded {what} overflows {dtype}")
        fold = Fold(
            bn=node_label(bn),
            into=node_label(layer.node),
            pattern=self.name,
            direction="producer",
            through=chain.through,
            dtype=str(dtype),
            rounding_error=max(weight.max_rel_error, bias.max_rel_error),
        )

        def write(editor: GraphEditor) -> None:
            editor.set_constant(
                layer.node, self.weight_index, weight.value, tensor_base(layer.node, "weight")
            )
            affine_end = self.write_bias(editor, layer, bias.value, bn)
            _splice_out(editor, chain, bn, affine_end)

        return Plan(fold, [bn, *chain.elementwise, *chain.layout, layer.node], write)


def _trace_channel_axis(ctx: FoldContext, chain: Chain) -> int | Skip:
    """BN's channel axis, followed back through the layout ops to the layer's output."""
    axis = BN_CHANNEL_AXIS
    if not chain.layout:
        return axis
    shapes = ctx.shapes()
    for node in reversed(chain.layout):
        traced = trace_axis_back(node, axis, shapes)
        if traced is None:
            return Skip(
                "axis-not-proven", f"cannot prove where {node_label(node)} moves the channel axis"
            )
        axis = traced
    return axis


def _splice_out(
    editor: GraphEditor, chain: Chain, bn: onnx.NodeProto, affine_end: onnx.NodeProto
) -> None:
    """Remove the constant ops and the BN; the last kept node now produces BN's output.

    ``affine_end`` is the node whose output carries the folded affine (the layer, or the
    bias ``Add`` a MatMul needed); the layout ops, if any, read it again.
    """
    bn_output = bn.output[0]
    editor.remove([*chain.elementwise, bn], keep_value_info={bn_output})
    last = affine_end
    if chain.layout:
        chain.layout[0].input[0] = affine_end.output[0]
        last = chain.layout[-1]
    if last.output[0] != bn_output:
        editor.rename_output(last, last.output[0], bn_output)


def tensor_base(node: onnx.NodeProto, what: str) -> str:
    """Base name for a tensor bnfold creates for ``node`` (made unique by the editor)."""
    return f"{node.name or node.output[0]}_{what}_bnfold"
