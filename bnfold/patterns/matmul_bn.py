"""MatMul → BN, where the BN's channel axis provably is the weight's output axis.

``Y = X·W`` with a constant 2-D ``W [K, N]``: the features are Y's last axis. BN normalises
axis 1 of its input, so the fold is exact only when that axis, followed back through any
Transpose/Reshape between them, lands on Y's last axis (``layout.trace_axis_back``); a 3-D
``Y [B, T, N]`` straight into BN normalises T and is refused. Then

    s·(X·W + b) + t = X·(W ⊙ s) + (s·b + t)

MatMul has no bias input: the new bias is one ``Add`` right after it (none when it is zero),
which onnxruntime fuses with the MatMul.

With the constant on the left, ``Y = W·X`` (``W [M, K]``, ``X [..., K, N]``), the output's
axis −2 holds W's rows: a BN on it (``Y [B, M, N]`` into BN) folds as ``W' = s ⊙ W`` (rows)
and a bias ``s·b + t`` shaped ``[M, 1]``; a BN on the columns is refused
(``channel-axis-mismatch``). Spec: https://onnx.ai/onnx/operators/onnx__MatMul.html
"""

from __future__ import annotations

import numpy as np
import onnx

from ..engine.foldmath import along_axis
from ..engine.outcomes import Skip
from ..engine.plan import AddConstant, Edit, Fresh, InsertNode, Name
from ..engine.protocol import Answer, FoldContext, NotMine, Target, node_label
from ..engine.sites import AffineSite
from .chain import Chain
from .layer_checks import constant_weight, left_to_qdq
from .producer import Layer, ProducerFold, tensor_base
from .registry import PRODUCER, register


@register(PRODUCER, split=True)
class MatMulBatchNorm(ProducerFold):
    name = "matmul-bn"
    op_type = "MatMul"
    bias_index = None

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[Chain]) -> Answer:
        if left_to_qdq(ctx.view, target.way.linear, 1):
            return NotMine("quantized")  # the qdq pattern answers (patterns/qdq_bn.py)
        return super().match(ctx, site, target)

    def inspect(self, ctx: FoldContext, node: onnx.NodeProto) -> Layer | Skip:
        # W @ x with W constant on the left: W's rows are the output's axis −2.
        slot = 0 if ctx.view.constant_value(node.input[0]) is not None else 1
        weight = constant_weight(ctx.view, node, slot, "weight")
        if isinstance(weight, Skip):
            return weight
        if weight.ndim != 2:
            return Skip(
                "unsupported-weight-rank",
                f"{node_label(node)} weight has rank {weight.ndim}, not 2",
            )
        shapes = ctx.shapes()
        rank = _rank(shapes.get(node.output[0])) or _rank(shapes.get(node.input[1 - slot]))
        if rank is None:
            return Skip("axis-not-proven", f"rank of {node_label(node)}'s input is unknown")
        rank = max(rank, 2) if rank >= 2 else 1
        if slot == 0:
            return Layer(node, weight, None, int(weight.shape[0]), rank, rank - 2, weight_index=0)
        return Layer(
            node, weight, None, int(weight.shape[1]), output_rank=rank, channel_axis=rank - 1
        )

    def weight_factors(self, layer: Layer, scale: np.ndarray) -> np.ndarray:
        return along_axis(scale, 0 if layer.weight_index == 0 else 1, 2)

    def bias_edits(
        self, layer: Layer, bias: np.ndarray, site: AffineSite, *, direct: bool
    ) -> tuple[list[Edit], Name]:
        """Add ``b'`` after the MatMul in a new ``Add`` (named after the site it replaces);
        for ``W @ x`` one value per row (``[M, 1]``, broadcast over the columns)."""
        if not np.any(bias):
            return [], layer.node.output[0]
        if layer.weight_index == 0:
            bias = bias.reshape(-1, 1)
        output = layer.node.output[0]
        bias_name = Fresh(tensor_base(layer.node, "bias"))
        carrier: Name = site.output if direct else Fresh(f"{output}_biased")
        add = InsertNode(
            "Add",
            (output, bias_name),
            (carrier,),
            Fresh(f"{site.nodes[-1].name or 'BatchNormalization'}_bias"),
            anchor=layer.node,
            like={} if direct else {0: output},
        )
        return [AddConstant(bias_name, bias, anchor=layer.node), add], carrier


def _rank(shape: tuple[int | str | None, ...] | None) -> int | None:
    return None if shape is None else len(shape)
