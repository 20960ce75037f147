"""An affine right after a BatchNormalization: merge it into the BN's own scale and bias.

Caffe's exporters write ``BN → Scale`` as ``BatchNormalization → Mul → Add``, and some graphs
stack two BNs. For ``BN(x) = γ·(x − μ)/sqrt(σ² + ε) + β`` followed by ``s·y + t`` per channel:

    s·BN(x) + t = (s·γ)·(x − μ)/sqrt(σ² + ε) + (s·β + t)

so ``γ' = s·γ``, ``β' = s·β + t`` and μ, σ², ε stay: the BN computes both (any sign of s).
The merged BN is still a site, and folds on into a neighbouring layer where it can; the
report then names where it finally went (``engine.merges``).
A BN that cannot be merged into (training mode, spatial=0, parameters not constant...) is
reported for itself; a site after it is refused as ``no-linear-producer``, with the kept BN's
reason in the detail, never with that reason as its own.
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
from ..engine.protocol import Answer, FoldContext, Plan, Target, node_label
from ..engine.sites import AffineSite
from .chain import Chain
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

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[Chain]) -> Answer:
        answer = super().match(ctx, site, target)
        if isinstance(answer, Plan):
            # The merged BN's label now and after the merge: with nothing between, it takes
            # the site's output (``splice_out``), an unnamed node's label.
            merged = target.way.linear
            after = merged.name or (
                node_label(merged) if target.way.passes else f"<{merged.op_type}:{site.output}>"
            )
            answer.fold.merge_labels = (node_label(merged), after)
        return answer

    def inspect(self, ctx: FoldContext, node: onnx.NodeProto) -> Layer | Skip:
        params = _merge_params(ctx, node)
        if isinstance(params, Skip):
            # That refusal is the other BN's own (reported for it); this site's is that
            # nothing before it takes the merge.
            return Skip(
                "no-linear-producer",
                f"input comes from BatchNormalization {node_label(node)}, which takes no merge "
                f"({params.reason}: {params.detail})",
            )
        gamma, beta = params
        shape = ctx.shapes().get(node.input[0])
        rank = len(shape) if shape is not None else None
        return Layer(node, gamma, beta, int(gamma.size), output_rank=rank, channel_axis=1)

    def weight_factors(self, layer: Layer, scale: np.ndarray) -> np.ndarray:
        return along_axis(scale, 0, 1)


def _merge_params(ctx: FoldContext, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray] | Skip:
    """The BN's γ and β, when it is an inference affine a merge can rewrite; else why not."""
    checked = batchnorm_affine(ctx.view, node, ctx.opset)
    if isinstance(checked, Skip):
        return checked
    gamma = constant_weight(ctx.view, node, 1, "scale")
    if isinstance(gamma, Skip):
        return gamma
    beta = constant_weight(ctx.view, node, 2, "B")
    if isinstance(beta, Skip):
        return beta
    return gamma, beta
