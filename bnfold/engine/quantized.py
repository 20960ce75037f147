"""Folding a per-channel affine into a layer whose weight is ``DequantizeLinear`` of a constant.

``DequantizeLinear`` (opset 13+) computes ``(q − zp) · scale``, per tensor or per slice along
``axis``. For output channel ``o`` of the layer and the affine's factor ``s_o``:

    DQ(q; scale, zp)[o] · s_o = DQ(q'; scale', zp')[o]
      s_o > 0:  q'[o] = q[o],          scale'_o = scale_o · s_o
      s_o < 0:  q'[o] = 2·zp_o − q[o], scale'_o = scale_o · |s_o|   (exact when 2·zp − q fits
                the integer type: a symmetric int8 weight without −128)
      s_o = 0:  q'[o] = zp_o,          scale'_o = scale_o           (the channel dequantizes to 0)

The integers move only where ``s_o < 0``; the scale rounds once to its float type (one ulp).
A per-tensor scale becomes per-channel (``axis`` = the weight's output-channel axis) unless
every ``|s_o|`` is the same. An int32 bias ``DQ(b_q; b_scale)`` becomes

    b' = s · b + t,   b_scale' = x_scale · scale'  (x_scale: the input's DequantizeLinear scale,
                      as QLinearConv/QLinearMatMul assume; without one, b_scale · |s|)
    b_q' = round(b' / b_scale')   (an error of at most half a step of b_scale')

reported in quantization steps of the output (the scale of the QuantizeLinear after the site).
Spec: https://onnx.ai/onnx/operators/onnx__DequantizeLinear.html
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .graph import GraphView, int_attribute, node_label
from .outcomes import Fold, Skip
from .plan import AddConstant, Edit, Fresh, InsertNode, Plan, RemoveNodes
from .sites import AffineSite

DEQUANTIZE = "DequantizeLinear"
# Layers with a qdq pattern (``patterns/qdq_bn.py``): their float patterns leave a quantized
# weight to it rather than refuse it.
QDQ_FOLDED = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
QUANTIZE = "QuantizeLinear"
# Per-axis DequantizeLinear (the ``axis`` attribute) exists from opset 13.
PER_AXIS_OPSET = 13
# Integer weight types whose values bnfold reads and, for a negative scale, rewrites.
WEIGHT_TYPES = frozenset({"int8", "uint8", "int16", "uint16"})
INT32 = np.iinfo(np.int32)
# Ops between the site and the output's QuantizeLinear whose step is still the output's.
TO_OUTPUT_Q = frozenset({"Relu", "Clip", "LeakyRelu", "Identity", "HardSigmoid", "Sigmoid"})


@dataclass
class Dequantized:
    """One ``DequantizeLinear`` of constants: its integers, scale, zero point and axis."""

    node: onnx.NodeProto
    values: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray | None
    axis: int | None  # normalised; None per tensor

    def dequantized(self) -> np.ndarray:
        """``(q − zp) · scale`` in float64."""
        return (self.values.astype(np.float64) - _along(self.zero_point, self)) * _along(
            self.scale, self
        )


def _along(value: np.ndarray | None, dq: Dequantized) -> np.ndarray | float:
    if value is None:
        return 0.0
    value = np.asarray(value, dtype=np.float64)
    if dq.axis is None or value.ndim == 0:
        return value.reshape(())
    shape = [1] * dq.values.ndim
    shape[dq.axis] = -1
    return value.reshape(shape)


def dequantize_source(view: GraphView, name: str) -> onnx.NodeProto | None:
    """The ``DequantizeLinear`` node that computes ``name`` directly, if any."""
    node = view.producer.get(name)
    return node if node is not None and node.op_type == DEQUANTIZE else None


def read_dequantize(view: GraphView, node: onnx.NodeProto, role: str) -> Dequantized | Skip:
    """The constants of DequantizeLinear ``node``, or why it is not one bnfold rewrites."""
    subject = f"{role} DequantizeLinear {node_label(node)}"
    if int_attribute(node, "block_size", 0):
        return Skip("quantized-weight", f"{subject} is blocked (block_size): not folded")
    names = list(node.input) + [""] * (3 - len(node.input))
    for name in names:
        if name and view.is_overridable(name):
            return view.overridable_skip(name, f"input {name!r} of {subject}")
    values = view.constant_value(names[0])
    scale = view.constant_value(names[1]) if names[1] else None
    zero_point = view.constant_value(names[2]) if names[2] else None
    if values is None or scale is None or (names[2] and zero_point is None):
        return Skip("quantized-weight", f"{subject} reads a tensor computed at run time")
    if scale.ndim > 1 or (zero_point is not None and zero_point.shape != scale.shape):
        return Skip("quantized-weight", f"{subject} has a scale of shape {list(scale.shape)}")
    if not np.issubdtype(scale.dtype, np.floating) or not np.all(np.isfinite(scale)):
        return Skip("quantized-weight", f"{subject} has a scale that is not finite float")
    axis: int | None = None
    if scale.ndim == 1 and values.ndim > 0:
        axis = int_attribute(node, "axis", 1)
        axis = axis + values.ndim if axis < 0 else axis
        if not 0 <= axis < values.ndim or values.shape[axis] != scale.size:
            return Skip("quantized-weight", f"{subject} has {scale.size} scales on axis {axis}")
    return Dequantized(node, values, scale, zero_point, axis)


@dataclass
class Rescaled:
    """The folded weight: integers (None when unchanged), scale, zero point, axis."""

    values: np.ndarray | None
    scale: np.ndarray
    zero_point: np.ndarray | None
    axis: int | None
    zero_point_changed: bool


def rescale_weight(
    dq: Dequantized, factors: np.ndarray, out_axis: int, opset: int
) -> Rescaled | Skip:
    """``DQ(q; scale, zp) · s`` along ``out_axis`` as one DequantizeLinear (module docstring)."""
    label = f"weight DequantizeLinear {node_label(dq.node)}"
    channels = dq.values.shape[out_axis]
    s = np.asarray(factors, dtype=np.float64).reshape(-1)
    if s.size != channels:
        return Skip(
            "channel-mismatch", f"{label} has {channels} output channels, the site {s.size}"
        )
    if dq.axis is not None and dq.axis != out_axis:
        return Skip(
            "quantized-weight",
            f"{label} is quantized per slice of axis {dq.axis}, its output channels are on "
            f"axis {out_axis}: a per-channel factor cannot move into that scale",
        )
    magnitude = np.abs(s)
    uniform = bool(np.all(magnitude == magnitude[0])) and bool(np.all(s > 0))
    if dq.axis is None and uniform:
        scale = np.asarray(dq.scale.astype(np.float64) * magnitude[0]).astype(dq.scale.dtype)
        return Rescaled(None, scale.reshape(dq.scale.shape), dq.zero_point, None, False)
    if dq.axis is None and opset < PER_AXIS_OPSET:
        return Skip(
            "unsupported-opset",
            f"{label} has one scale for all channels; a per-channel scale needs "
            f"DequantizeLinear-{PER_AXIS_OPSET} (the model has opset {opset})",
        )
    base = np.broadcast_to(dq.scale.astype(np.float64).reshape(-1), (channels,))
    zp_dtype = dq.values.dtype
    zp = (
        np.zeros(channels, dtype=np.int64)
        if dq.zero_point is None
        else np.broadcast_to(dq.zero_point.astype(np.int64).reshape(-1), (channels,))
    )
    negative, zero = s < 0, s == 0
    values: np.ndarray | None = None
    if np.any(negative | zero):
        if dq.values.dtype.name not in WEIGHT_TYPES:
            return Skip(
                "quantized-negative-scale",
                f"{label} holds {dq.values.dtype} integers, which bnfold does not rewrite (a "
                "negative or zero BN scale would need it)",
            )
        info = np.iinfo(dq.values.dtype)
        moved = np.moveaxis(dq.values.astype(np.int64), out_axis, 0).copy()
        zp_col = zp.reshape((-1,) + (1,) * (moved.ndim - 1))
        flipped = 2 * zp_col - moved
        bad = negative & np.any(
            (flipped < info.min) | (flipped > info.max), axis=tuple(range(1, moved.ndim))
        )
        if np.any(bad):
            first = int(np.flatnonzero(bad)[0])
            return Skip(
                "quantized-negative-scale",
                f"{label}: channel {first} has a negative scale and its weights are not "
                f"symmetric around the zero point (negating them leaves {dq.values.dtype}, "
                f"e.g. {info.min}); {int(bad.sum())} channel(s) affected",
            )
        moved = np.where(negative.reshape(zp_col.shape), flipped, moved)
        moved = np.where(zero.reshape(zp_col.shape), np.broadcast_to(zp_col, moved.shape), moved)
        values = np.moveaxis(moved, 0, out_axis).astype(dq.values.dtype)
    factor = np.where(zero, 1.0, magnitude)
    scale = (base * factor).astype(dq.scale.dtype)
    zero_point = None if dq.zero_point is None else zp.astype(zp_dtype)
    changed = dq.zero_point is not None and dq.zero_point.ndim == 0
    return Rescaled(values, scale, zero_point if changed else dq.zero_point, out_axis, changed)


@dataclass
class RequantizedBias:
    values: np.ndarray  # int32
    scale: np.ndarray  # float, per channel
    error: np.ndarray  # |b_q'·b_scale' − b'| per channel, float64


def requantize_bias(
    exact: np.ndarray,
    weight_scale: np.ndarray,
    input_scale: np.ndarray | None,
    fallback: np.ndarray,
) -> RequantizedBias | Skip:
    """``b_q' = round(b' / b_scale')`` with ``b_scale' = x_scale · scale'`` (or ``fallback``)."""
    channels = exact.size
    if input_scale is not None:
        dtype = weight_scale.dtype
        scale = np.asarray(input_scale, dtype=dtype).reshape(()) * weight_scale.astype(dtype)
        scale = np.broadcast_to(scale.reshape(-1), (channels,)).astype(dtype)
    else:
        scale = np.broadcast_to(fallback.reshape(-1), (channels,)).copy()
    step = scale.astype(np.float64)
    if np.any(step <= 0) or not np.all(np.isfinite(step)):
        return Skip("quantized-weight", "the folded bias would have a zero or non-finite scale")
    quotient = np.rint(exact.reshape(-1) / step)
    if np.any(quotient < INT32.min) or np.any(quotient > INT32.max):
        return Skip("overflow", "the folded bias overflows int32 at its quantization scale")
    values = quotient.astype(np.int32)
    error = np.abs(values.astype(np.float64) * step - exact.reshape(-1))
    return RequantizedBias(values, scale, error)


def input_scale(view: GraphView, node: onnx.NodeProto, slot: int = 0) -> np.ndarray | None:
    """The per-tensor scale of the DequantizeLinear that feeds ``node.input[slot]``, if any."""
    source = dequantize_source(view, node.input[slot]) if slot < len(node.input) else None
    if source is None or len(source.input) < 2:
        return None
    scale = view.constant_value(source.input[1])
    return scale if scale is not None and scale.size == 1 else None


def output_scale(view: GraphView, name: str) -> float | None:
    """The per-tensor scale of the QuantizeLinear that quantizes ``name`` (through Relu and
    the like), if any: the output's quantization step."""
    for _ in range(4):
        reader = view.only_consumer(name)
        if reader is None:
            return None
        if reader.op_type == QUANTIZE and len(reader.input) > 1:
            scale = view.constant_value(reader.input[1])
            return float(scale.reshape(-1)[0]) if scale is not None and scale.size == 1 else None
        if reader.op_type not in TO_OUTPUT_Q:
            return None
        name = reader.output[0]
    return None


__all__ = [
    "DEQUANTIZE",
    "PER_AXIS_OPSET",
    "QDQ_FOLDED",
    "Dequantized",
    "RequantizedBias",
    "Rescaled",
    "dequantize_source",
    "input_scale",
    "output_scale",
    "quantized_lowering_plan",
    "read_dequantize",
    "requantize_bias",
    "rescale_weight",
]


# The largest magnitude of a symmetric int8 weight: a lowered BN's weight is ±127 at scale
# |s|/127, so the weight is exact and the bias rounds at x_scale·|s|/127.
INT8_PEAK = 127


def quantized_lowering_plan(view: GraphView, site: AffineSite) -> Plan | None:
    """``DQ(x) → BN → Q`` as ``DQ(x) → Conv(DQ(±127; |s|/127), DQ(int32 t)) → Q``: a 1×1
    depthwise QDQ Conv (``group = C``), which onnxruntime runs as a ``QLinearConv``.

    ``DQ(sign(s)·127; |s|/127) = s`` per channel (one float rounding of the scale); the bias
    ``t`` is re-quantized at ``x_scale·|s|/127`` (half a step at most, reported in steps of
    the QuantizeLinear's scale). None where the site is no quantized standalone BN: its input
    not from a per-tensor DequantizeLinear, its output not read by one QuantizeLinear alone,
    rank < 3, or opset < 13 (per-axis DequantizeLinear).
    """
    if view.opset < PER_AXIS_OPSET or site.rank is None or site.rank < 3 or site.axis != 1:
        return None
    source = dequantize_source(view, site.input)
    reader = view.only_consumer(site.output)
    if source is None or reader is None or reader.op_type != QUANTIZE:
        return None
    x_scale = _scale_of(view, source)
    y_scale = output_scale(view, site.output)
    if x_scale is None or y_scale is None:
        return None
    s, t = site.affine.scale, site.affine.shift
    dtype = x_scale.dtype
    channels = s.size
    magnitude = np.abs(s)
    w_scale = np.where(magnitude > 0, magnitude, 1.0) / INT8_PEAK
    weight_scale = w_scale.astype(dtype)
    values = (
        (np.sign(s) * INT8_PEAK).astype(np.int8).reshape((channels, 1) + (1,) * (site.rank - 2))
    )
    bias = requantize_bias(t, weight_scale, x_scale, weight_scale)
    if isinstance(bias, Skip):
        return None
    bn = site.nodes[0]
    base = bn.name or site.output
    names = [Fresh(f"{base}_{what}") for what in ("w_q", "w_scale", "w_zp", "b_q", "b_scale")]
    weight_out, bias_out = Fresh(f"{base}_w_dq"), Fresh(f"{base}_b_dq")
    arrays = [values, weight_scale, np.zeros(channels, np.int8), bias.values, bias.scale]
    edits: list[Edit] = [
        AddConstant(name, array, anchor=bn) for name, array in zip(names, arrays, strict=True)
    ]
    edits += [
        InsertNode(
            DEQUANTIZE,
            tuple(names[:3]),
            (weight_out,),
            Fresh(f"{base}_w_dq"),
            anchor=bn,
            after=False,
            attributes={"axis": 0},
        ),
        InsertNode(
            DEQUANTIZE,
            tuple(names[3:]),
            (bias_out,),
            Fresh(f"{base}_b_dq"),
            anchor=bn,
            after=False,
            attributes={"axis": 0},
        ),
        InsertNode(
            "Conv",
            (site.input, weight_out, bias_out),
            (site.output,),
            Fresh(f"{base}_dwconv"),
            anchor=bn,
            after=False,
            attributes={"group": channels, "kernel_shape": [1] * (site.rank - 2)},
        ),
        RemoveNodes((bn,), keep_value_info=(site.output,)),
    ]
    fold = Fold(
        bn=site.label,
        into="QDQ Conv (1×1 depthwise)",
        pattern="lower-standalone",
        direction="lowered",
        dtype="int8",
        quantization_steps=float(np.max(bias.error, initial=0.0)) / y_scale,
    )
    return Plan(fold, [bn], edits, target=None, site_output=site.output)


def _scale_of(view: GraphView, node: onnx.NodeProto) -> np.ndarray | None:
    """The per-tensor scale of DequantizeLinear ``node``, if constant."""
    if len(node.input) < 2:
        return None
    scale = view.constant_value(node.input[1])
    if scale is None or scale.size != 1 or not np.issubdtype(scale.dtype, np.floating):
        return None
    return scale.reshape(())
