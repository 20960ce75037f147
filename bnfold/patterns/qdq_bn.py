"""BN → a quantized (QDQ) layer: ``DequantizeLinear(int W, scale) → Conv → BN``.

The fold stays in the dequantized domain and keeps the Q/DQ structure: the BN's per-channel
scale moves into the weight's DequantizeLinear scale (the integers untouched, or negated for a
negative scale when that is exact), the bias becomes ``s·b + t``, re-quantized to int32 at
``x_scale · scale'`` when it was an int32 DequantizeLinear (a new one when the layer had no
bias and its input is dequantized), float when it was float. Activation scales and zero
points are never changed. The formulas: ``bnfold.engine.quantized``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ..engine.constants import quantized_source
from ..engine.foldmath import Affine, all_finite, round_to
from ..engine.graph import attribute, float_attribute, int_attribute
from ..engine.outcomes import Fold, Skip
from ..engine.plan import (
    AddConstant,
    Edit,
    Fresh,
    InsertNode,
    Name,
    RemoveNodes,
    SetConstant,
    SetFloatAttribute,
    SetInput,
)
from ..engine.protocol import Answer, FoldContext, NotMine, Plan, Target, node_label
from ..engine.quantized import (
    PER_AXIS_OPSET,
    Dequantized,
    dequantize_source,
    input_scale,
    output_scale,
    read_dequantize,
    requantize_bias,
    rescale_weight,
)
from ..engine.sites import AffineSite
from .chain import Chain
from .gemm_bn import GemmBatchNorm
from .layer_checks import optional_bias
from .matmul_bn import MatMulBatchNorm
from .producer import Layer, ProducerFold, Slot, _splice_into, splice_out, tensor_base
from .registry import PRODUCER, register


@dataclass
class QuantizedLayer(Layer):
    """A layer whose weight is ``DequantizeLinear`` of constants (and its bias, maybe)."""

    quantized: Dequantized | None = None
    quantized_bias: Dequantized | None = None


class QuantizedProducerFold(ProducerFold):
    """The producer checklist of ``ProducerFold``; the plan rewrites DequantizeLinear nodes."""

    def weight_axis(self, layer: Layer) -> int:
        """The weight axis that holds the layer's output channels."""
        raise NotImplementedError

    def after_bias(self, layer: Layer) -> list[Edit]:
        """Edits once the bias holds ``b'`` (Gemm: ``β = 1``)."""
        return []

    def output_channels(self, node: onnx.NodeProto, dq: Dequantized, axis: int) -> int:
        """The layer's output channels, from its weight's integers."""
        return int(dq.values.shape[axis])

    def axis_factors(self, layer: Layer, scale: np.ndarray) -> np.ndarray | Skip:
        """The factor of each slice of the weight's output-channel axis, from the per-output-
        channel ``scale`` (the same unless slices are shared: a grouped ConvTranspose)."""
        return scale

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[Chain]) -> Answer:
        return self.fold(ctx, site, target.way)  # not the float pattern's (it says NotMine)

    def fold(
        self, ctx: FoldContext, site: AffineSite, chain: Chain, *, into: Slot | None = None
    ) -> Answer:
        node = chain.linear
        name = node.input[self.weight_index] if self.weight_index < len(node.input) else ""
        if not name or dequantize_source(ctx.view, name) is None:
            source = quantized_source(ctx.view, name) if name else None
            if source is None:
                return NotMine("not-quantized")
            return Skip(
                "quantized-weight",
                f"weight {name!r} of {node_label(node)} comes from {source.op_type} "
                f"{node_label(source)} through shape ops: not folded",
            )
        return super().fold(ctx, site, chain, into=into)

    def read_bias(
        self, ctx: FoldContext, node: onnx.NodeProto
    ) -> tuple[np.ndarray | None, Dequantized | None] | Skip:
        index = self.bias_index
        if index is None or index >= len(node.input) or not node.input[index]:
            return None, None
        source = dequantize_source(ctx.view, node.input[index])
        if source is None:
            bias = optional_bias(ctx.view, node, index)
            return bias if isinstance(bias, Skip) else (bias, None)
        dq = read_dequantize(ctx.view, source, "bias")
        if isinstance(dq, Skip):
            return dq
        if dq.values.dtype != np.int32:
            return Skip(
                "quantized-weight",
                f"bias DequantizeLinear {node_label(source)} holds {dq.values.dtype}, not int32",
            )
        return dq.dequantized().reshape(-1), dq

    def quantized_layer(
        self, ctx: FoldContext, node: onnx.NodeProto, rank: int, channel_axis: int
    ) -> QuantizedLayer | Skip:
        """The layer with its weight's DequantizeLinear, whose weight has rank ``rank``."""
        source = dequantize_source(ctx.view, node.input[self.weight_index])
        assert source is not None
        dq = read_dequantize(ctx.view, source, "weight")
        if isinstance(dq, Skip):
            return dq
        if dq.values.ndim != rank if rank == 2 else dq.values.ndim < rank:
            return Skip(
                "param-shape-mismatch", f"{node_label(node)} weight has rank {dq.values.ndim}"
            )
        bias = self.read_bias(ctx, node)
        if isinstance(bias, Skip):
            return bias
        probe = QuantizedLayer(node, np.empty(0), None, 0, None, channel_axis, quantized=dq)
        channels = self.output_channels(node, dq, self.weight_axis(probe))
        if bias[1] is not None and bias[0] is not None and bias[0].size != channels:
            return Skip(
                "param-shape-mismatch",
                f"{node_label(node)} bias has {bias[0].size} values for {channels} channels",
            )
        weight = dq.dequantized().astype(dq.scale.dtype)
        return QuantizedLayer(
            node,
            weight,
            bias[0],
            channels,
            output_rank=None,
            channel_axis=channel_axis,
            quantized=dq,
            quantized_bias=bias[1],
        )

    def _plan(
        self,
        ctx: FoldContext,
        site: AffineSite,
        chain: Chain,
        layer: Layer,
        total: Affine,
        staying_shift: np.ndarray | None,
        into: Slot | None = None,
    ) -> Plan | Skip:
        assert isinstance(layer, QuantizedLayer) and layer.quantized is not None
        node, dq = layer.node, layer.quantized
        factors = self.axis_factors(layer, total.scale)
        if isinstance(factors, Skip):
            return factors
        rescaled = rescale_weight(dq, factors, self.weight_axis(layer), ctx.opset)
        if isinstance(rescaled, Skip):
            return rescaled
        float_type = dq.scale.dtype
        exact_bias = self.new_bias(layer, total)
        edits: list[Edit] = []
        values: Name = dq.node.input[0]
        if rescaled.values is not None:
            fresh_values = Fresh(tensor_base(node, "weight_q"))
            edits.append(AddConstant(fresh_values, rescaled.values, anchor=node))
            values = fresh_values
        scale = Fresh(tensor_base(node, "weight_scale"))
        edits.append(AddConstant(scale, rescaled.scale, anchor=node))
        inputs: list[Name] = [values, scale]
        if rescaled.zero_point is not None:
            if rescaled.zero_point_changed:
                fresh_zero_point = Fresh(tensor_base(node, "weight_zero_point"))
                edits.append(AddConstant(fresh_zero_point, rescaled.zero_point, anchor=node))
                inputs.append(fresh_zero_point)
            else:
                inputs.append(dq.node.input[2])
        edits += _replace_dequantize(ctx, node, self.weight_index, dq, tuple(inputs), rescaled.axis)
        steps: float | None = None
        x_scale = input_scale(ctx.view, node)
        carrier: Name = node.output[0]
        shift = None
        if staying_shift is not None:
            assert site.rank is not None
            shape = (len(staying_shift),) + (1,) * (site.rank - site.axis - 1)
            shift = round_to(staying_shift.reshape(shape), float_type).value
        if self.bias_index is None:  # MatMul: the bias becomes a float Add after the layer
            bias = round_to(exact_bias, float_type)
            direct = not chain.passes and shift is None and into is None
            stored, carrier = self.bias_edits(layer, bias.value, site, direct=direct)
            edits += stored
        elif layer.quantized_bias is not None or (layer.bias is None and x_scale is not None):
            channels = exact_bias.size
            per_slice = rescaled.scale.reshape(-1)
            if 1 < per_slice.size < channels:  # a grouped ConvTranspose: groups share slices
                per_slice = np.tile(per_slice, channels // per_slice.size)
            weight_scale = np.broadcast_to(per_slice, (channels,))
            fallback = weight_scale
            if layer.quantized_bias is not None:
                magnitude = np.where(total.scale == 0, 1.0, np.abs(total.scale))
                old = layer.quantized_bias.scale.astype(np.float64).reshape(-1)
                fallback = (old * magnitude).astype(layer.quantized_bias.scale.dtype)
            requantized = requantize_bias(exact_bias, weight_scale.copy(), x_scale, fallback)
            if isinstance(requantized, Skip):
                return requantized
            bias_values = Fresh(tensor_base(node, "bias_q"))
            bias_scale = Fresh(tensor_base(node, "bias_scale"))
            edits.append(AddConstant(bias_values, requantized.values, anchor=node))
            edits.append(AddConstant(bias_scale, requantized.scale, anchor=node))
            edits += _replace_dequantize(
                ctx, node, self.bias_index, layer.quantized_bias, (bias_values, bias_scale), 0
            )
            step = output_scale(ctx.view, site.output) or requantized.scale.astype(np.float64)
            steps = float(np.max(requantized.error / step, initial=0.0))
        else:
            bias = round_to(exact_bias, layer.bias.dtype if layer.bias is not None else float_type)
            if not all_finite(bias.value):
                return Skip("overflow", f"folded bias overflows {bias.value.dtype}")
            edits.append(SetConstant(node, self.bias_index, bias.value, tensor_base(node, "bias")))
        edits += self.after_bias(layer)
        if into is not None:
            edits += _splice_into(chain, into, carrier)
        else:
            edits += splice_out(chain, site, carrier, shift)
        fold = Fold(
            bn=site.label,
            into=node_label(node),
            pattern=self.name,
            direction="producer" if shift is None else "producer (scale), shift kept as Add",
            through=chain.through,
            dtype=str(dq.values.dtype),
            kind=site.kind,
            quantization_steps=steps,
        )
        readers = [dq.node] + ([layer.quantized_bias.node] if layer.quantized_bias else [])
        return Plan(
            fold,
            [*site.nodes, *chain.elementwise, *chain.passes, *chain.shape_readers, node, *readers],
            edits,
            target=node,
            site_output=site.output,
        )


def _replace_dequantize(
    ctx: FoldContext,
    node: onnx.NodeProto,
    slot: int,
    old: Dequantized | None,
    inputs: tuple[Name, ...],
    axis: int | None,
) -> list[Edit]:
    """A new DequantizeLinear of ``inputs`` feeds ``node.input[slot]``; the old one goes when
    ``node`` was its only reader (another reader keeps it, unchanged)."""
    like = {0: old.node.output[0]} if old is not None else {}
    base = old.node.name if old is not None and old.node.name else f"{node.name or 'layer'}_dq"
    output = Fresh(f"{old.node.output[0] if old is not None else base}_bnfold")
    edits: list[Edit] = [
        InsertNode(
            "DequantizeLinear",
            inputs,
            (output,),
            Fresh(f"{base}_bnfold"),
            anchor=node,
            after=False,
            like=like,
            attributes={} if axis is None else {"axis": axis},
        ),
        SetInput(node, slot, output),
    ]
    if old is not None and ctx.view.only_consumer(old.node.output[0]) is node:
        edits.append(RemoveNodes((old.node,)))
    return edits


@register(PRODUCER, split=True)
class QdqConvBatchNorm(QuantizedProducerFold):
    """Conv whose weight ``[C_out, C_in/group, k…]`` is DequantizeLinear of int8/uint8."""

    name = "qdq-conv-bn"
    op_type = "Conv"

    def inspect(self, ctx: FoldContext, node: onnx.NodeProto) -> Layer | Skip:
        layer = self.quantized_layer(ctx, node, 3, channel_axis=1)
        if isinstance(layer, QuantizedLayer):
            if layer.bias is not None and layer.bias.size != layer.channels:
                return Skip(
                    "param-shape-mismatch",
                    f"{node_label(node)} bias has {layer.bias.size} values for "
                    f"{layer.channels} channels",
                )
            assert layer.quantized is not None
            layer.output_rank = layer.quantized.values.ndim
        return layer

    def weight_axis(self, layer: Layer) -> int:
        return 0


@register(PRODUCER, split=True)
class QdqConvTransposeBatchNorm(QuantizedProducerFold):
    """ConvTranspose whose weight ``[C_in, C_out/group, k…]`` is DequantizeLinear of int8/uint8.

    Output channel ``g·(C_out/group) + j`` reads slice ``j`` of axis 1 in every group, so a
    per-channel scale (``axis=1``, which onnxruntime accepts) has ``C_out/group`` values, each
    shared by ``group`` output channels: the BN's factors fold when they agree across groups
    (always for ``group = 1``), else the fold is refused (``quantized-weight``).
    """

    name = "qdq-convtranspose-bn"
    op_type = "ConvTranspose"

    def inspect(self, ctx: FoldContext, node: onnx.NodeProto) -> Layer | Skip:
        layer = self.quantized_layer(ctx, node, 3, channel_axis=1)
        if isinstance(layer, QuantizedLayer):
            assert layer.quantized is not None
            group = int_attribute(node, "group", 1)
            if group < 1 or layer.quantized.values.shape[0] % group:
                return Skip(
                    "param-shape-mismatch",
                    f"{node_label(node)} weight {list(layer.quantized.values.shape)} with "
                    f"group={group}",
                )
            if layer.bias is not None and layer.bias.size != layer.channels:
                return Skip(
                    "param-shape-mismatch",
                    f"{node_label(node)} bias has {layer.bias.size} values for "
                    f"{layer.channels} channels",
                )
            layer.output_rank = layer.quantized.values.ndim
        return layer

    def weight_axis(self, layer: Layer) -> int:
        return 1

    def output_channels(self, node: onnx.NodeProto, dq: Dequantized, axis: int) -> int:
        return int(dq.values.shape[axis]) * int_attribute(node, "group", 1)

    def axis_factors(self, layer: Layer, scale: np.ndarray) -> np.ndarray | Skip:
        group = int_attribute(layer.node, "group", 1)
        per_group = np.asarray(scale, dtype=np.float64).reshape(group, -1)
        if np.all(per_group == per_group[0]):
            return per_group[0]
        return Skip(
            "quantized-weight",
            f"{node_label(layer.node)} has group={group}: its weight's axis 1 holds "
            f"{per_group.shape[1]} channels, each scale shared by {group} output channels, and "
            "the BN's factors differ between groups (a per-channel factor cannot move into "
            "that scale)",
        )


@register(PRODUCER, split=True)
class QdqGemmBatchNorm(QuantizedProducerFold, GemmBatchNorm):
    """Gemm whose B is DequantizeLinear of int8/uint8 (per output column or per tensor)."""

    name = "qdq-gemm-bn"
    op_type = "Gemm"

    def inspect(self, ctx: FoldContext, node: onnx.NodeProto) -> Layer | Skip:
        if ctx.opset < PER_AXIS_OPSET:
            return Skip("unsupported-opset", f"Gemm-{ctx.opset} in a QDQ model is not folded")
        layer = self.quantized_layer(ctx, node, 2, channel_axis=1)
        if isinstance(layer, QuantizedLayer):
            layer.output_rank = 2
            if layer.quantized_bias is not None and float_attribute(node, "beta", 1.0) != 1.0:
                return Skip("quantized-weight", f"{node_label(node)} scales its int32 bias (beta)")
        return layer

    def weight_axis(self, layer: Layer) -> int:
        return 0 if attribute(layer.node, "transB", 0) else 1

    def after_bias(self, layer: Layer) -> list[Edit]:
        if layer.bias is None or float_attribute(layer.node, "beta", 1.0) == 1.0:
            return []
        return [SetFloatAttribute(layer.node, "beta", 1.0)]


@register(PRODUCER, split=True)
class QdqMatMulBatchNorm(QuantizedProducerFold, MatMulBatchNorm):
    """``x @ DQ(W)`` with W ``[K, N]`` of int8/uint8; the bias ``s·0 + t`` becomes a float Add."""

    name = "qdq-matmul-bn"
    op_type = "MatMul"
    bias_index = None

    def inspect(self, ctx: FoldContext, node: onnx.NodeProto) -> Layer | Skip:
        shape = ctx.shapes().get(node.output[0])
        if shape is None or len(shape) < 2:
            return Skip("axis-not-proven", f"rank of {node_label(node)}'s output is unknown")
        layer = self.quantized_layer(ctx, node, 2, channel_axis=len(shape) - 1)
        if isinstance(layer, QuantizedLayer):
            layer.output_rank = len(shape)
        return layer

    def weight_axis(self, layer: Layer) -> int:
        return 1
