"""Conv → BN and ConvTranspose → BN (also through constant bias Add/Sub and Mul/Div).

Conv weights are ``[C_out, C_in/group, k…]``: output channel ``o`` is slice ``W[o]`` for any
``group``, stride, dilation, padding or ``auto_pad`` (the affine acts after the sum).
ConvTranspose weights are ``[C_in, C_out/group, k…]``: see
``foldmath.conv_transpose_output_scale`` for which slice feeds which output channel.
Spec: https://onnx.ai/onnx/operators/onnx__Conv.html,
https://onnx.ai/onnx/operators/onnx__ConvTranspose.html
"""

from __future__ import annotations

import numpy as np
import onnx

from ..engine.foldmath import along_axis, conv_transpose_output_scale
from ..engine.graph import int_attribute
from ..engine.outcomes import Skip
from ..engine.protocol import Answer, FoldContext, NotMine, Target, node_label
from ..engine.sites import AffineSite
from .chain import Chain
from .layer_checks import constant_weight, left_to_qdq, optional_bias
from .producer import Layer, ProducerFold
from .registry import PRODUCER, register


@register(PRODUCER, split=True)
class ConvBatchNorm(ProducerFold):
    name = "conv-bn"
    op_type = "Conv"

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[Chain]) -> Answer:
        if left_to_qdq(ctx.view, target.way.linear, 1):
            return NotMine("quantized")  # qdq-conv-bn answers (patterns/qdq_bn.py)
        return super().match(ctx, site, target)

    def inspect(self, ctx: FoldContext, node: onnx.NodeProto) -> Layer | Skip:
        weight = constant_weight(ctx.view, node, 1, "weight")
        if isinstance(weight, Skip):
            return weight
        if weight.ndim < 3:
            return Skip("param-shape-mismatch", f"{node_label(node)} weight has rank {weight.ndim}")
        bias = optional_bias(ctx.view, node, 2)
        if isinstance(bias, Skip):
            return bias
        channels = int(weight.shape[0])
        if bias is not None and bias.size != channels:
            return Skip(
                "param-shape-mismatch",
                f"{node_label(node)} bias has {bias.size} values for {channels} channels",
            )
        return Layer(node, weight, bias, channels, output_rank=weight.ndim, channel_axis=1)

    def weight_factors(self, layer: Layer, scale: np.ndarray) -> np.ndarray:
        return along_axis(scale, 0, layer.weight.ndim)


@register(PRODUCER, split=True)
class ConvTransposeBatchNorm(ProducerFold):
    name = "convtranspose-bn"
    op_type = "ConvTranspose"

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[Chain]) -> Answer:
        if left_to_qdq(ctx.view, target.way.linear, 1):
            return NotMine("quantized")  # qdq-convtranspose-bn answers (patterns/qdq_bn.py)
        return super().match(ctx, site, target)

    def inspect(self, ctx: FoldContext, node: onnx.NodeProto) -> Layer | Skip:
        weight = constant_weight(ctx.view, node, 1, "weight")
        if isinstance(weight, Skip):
            return weight
        group = int_attribute(node, "group", 1)
        if weight.ndim < 3 or group < 1 or weight.shape[0] % group:
            return Skip(
                "param-shape-mismatch",
                f"{node_label(node)} weight {list(weight.shape)} with group={group}",
            )
        bias = optional_bias(ctx.view, node, 2)
        if isinstance(bias, Skip):
            return bias
        channels = int(weight.shape[1]) * group
        if bias is not None and bias.size != channels:
            return Skip(
                "param-shape-mismatch",
                f"{node_label(node)} bias has {bias.size} values for {channels} channels",
            )
        return Layer(node, weight, bias, channels, output_rank=weight.ndim, channel_axis=1)

    def weight_factors(self, layer: Layer, scale: np.ndarray) -> np.ndarray:
        group = int_attribute(layer.node, "group", 1)
        factors = conv_transpose_output_scale(scale, layer.weight.shape[0], group)
        return factors.reshape(factors.shape + (1,) * (layer.weight.ndim - 2))
