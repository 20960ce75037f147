"""Gemm → BN: ``Y = α·A'·B' + β·C`` with ``A' = transA ? Aᵀ : A``, ``B' = transB ? Bᵀ : B``.

BN over ``Y``'s axis 1 (the N columns) gives

    s·Y + t = α·A'·(B' ⊙ s) + (s·β·C + t)

so the columns of ``B'`` (axis 1 of B, or axis 0 when ``transB=1``) are scaled, and the new
``C' = s·β·C + t`` is written with ``β = 1``. ``C`` may be absent, a scalar, ``[N]``,
``[1, N]``, ``[M, 1]`` or ``[M, N]``; ``C'`` has the broadcast shape of ``C`` and ``[N]``.
Spec: https://onnx.ai/onnx/operators/onnx__Gemm.html
"""

from __future__ import annotations

import numpy as np
import onnx

from ..engine.foldmath import Affine, along_axis
from ..engine.graph import attribute, float_attribute
from ..engine.outcomes import Skip
from ..engine.plan import Edit, Name, SetFloatAttribute
from ..engine.protocol import Answer, FoldContext, NotMine, Target, node_label
from ..engine.sites import AffineSite
from .chain import Chain
from .layer_checks import constant_weight, left_to_qdq, optional_bias
from .producer import Layer, ProducerFold
from .registry import PRODUCER, register


@register(PRODUCER, split=True)
class GemmBatchNorm(ProducerFold):
    name = "gemm-bn"
    op_type = "Gemm"

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[Chain]) -> Answer:
        if left_to_qdq(ctx.view, target.way.linear, 1):
            return NotMine("quantized")  # the qdq pattern answers (patterns/qdq_bn.py)
        return super().match(ctx, site, target)

    def inspect(self, ctx: FoldContext, node: onnx.NodeProto) -> Layer | Skip:
        if ctx.opset < 7:
            return Skip("unsupported-opset", f"Gemm-{ctx.opset} broadcasting rules are not handled")
        weight = constant_weight(ctx.view, node, 1, "B")
        if isinstance(weight, Skip):
            return weight
        if weight.ndim != 2:
            return Skip("param-shape-mismatch", f"{node_label(node)} B has rank {weight.ndim}")
        bias = optional_bias(ctx.view, node, 2)
        if isinstance(bias, Skip):
            return bias
        channels = int(weight.shape[0] if attribute(node, "transB", 0) else weight.shape[1])
        return Layer(node, weight, bias, channels, output_rank=2, channel_axis=1)

    def weight_factors(self, layer: Layer, scale: np.ndarray) -> np.ndarray:
        axis = 0 if attribute(layer.node, "transB", 0) else 1
        return along_axis(scale, axis, 2)

    def new_bias(self, layer: Layer, affine: Affine) -> np.ndarray:
        """``C' = s·β·C + t``; numpy broadcasting of C against ``[N]`` gives its shape."""
        if layer.bias is None:
            return affine.shift
        beta = float_attribute(layer.node, "beta", 1.0)
        bias = np.asarray(layer.bias, dtype=np.float64)
        if bias.ndim > 2:
            raise ValueError(f"C has rank {bias.ndim}")
        return affine.scale * beta * bias + affine.shift

    def bias_edits(
        self, layer: Layer, bias: np.ndarray, site: AffineSite, *, direct: bool
    ) -> tuple[list[Edit], Name]:
        """Store ``C'`` and set ``β = 1``."""
        edits, carrier = super().bias_edits(layer, bias, site, direct=direct)
        return [*edits, SetFloatAttribute(layer.node, "beta", 1.0)], carrier
