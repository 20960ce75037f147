"""An affine right after a BatchNormalization: merge it into the BN's own scale and bias.

Caffe's exporters write ``BN → Scale`` as ``BatchNormalization → Mul → Add``, and some graphs
stack two BNs. For ``BN(x) = γ·(x − μ)/sqrt(σ² + ε) + β`` followed by ``s·y + t`` per channel:

    s·BN(x) + t = (s·γ)·(x − μ)/sqrt(σ² + ε) + (s·β + t)

so ``γ' = s·γ``, ``β' = s·β + t`` and μ, σ², ε stay: the BN computes both (any sign of s).
The merged BN is still a site, and folds on into a neighbouring layer where it can.
float32/float64 only: in float16 each merge rounds γ' and β' once more, and merged BNs that
then fold on compound those roundings beyond the per-fold bound (a fuzz finding).
Spec: https://onnx.ai/onnx/operators/onnx__BatchNormalization.html
"""

from __future__ import annotations

import numpy as np
import onnx

from ..engine.batchnorm import batchnorm_affine
from ..engine.foldmath import LOW_PRECISION, along_axis
from ..engine.outcomes import Skip
from ..engine.protocol import FoldContext
from ..engine.sites import AffineSite
from .layer_checks import constant_weight
from .producer import Layer, ProducerFold
from .registry import PRODUCER_GROUP, register


@register(PRODUCER_GROUP)
class BatchNormAffine(ProducerFold):
    name = "bn-affine"
    op_type = "BatchNormalization"

    def accepts(self, ctx: FoldContext, site: AffineSite) -> bool:
        # float16/bfloat16: each merge rounds γ' and β' once more, and a chain of merged BNs
        # then folded on compounds those roundings past the per-fold bound: float32 only.
        elem = ctx.view.elem_type(site.input)
        return (
            elem is not None
            and np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).name not in LOW_PRECISION
        )

    def inspect(self, ctx: FoldContext, node: onnx.NodeProto) -> Layer | Skip:
        checked = batchnorm_affine(ctx.view, node, ctx.opset)
        if isinstance(checked, Skip):
            return checked
        gamma = constant_weight(ctx.view, node, 1, "scale")
        if isinstance(gamma, Skip):
            return gamma
        beta = constant_weight(ctx.view, node, 2, "B")
        if isinstance(beta, Skip):
            return beta
        shape = ctx.shapes().get(node.input[0])
        rank = len(shape) if shape is not None else None
        return Layer(node, gamma, beta, int(gamma.size), output_rank=rank, channel_axis=1)

    def weight_factors(self, layer: Layer, scale: np.ndarray) -> np.ndarray:
        return along_axis(scale, 0, 1)
