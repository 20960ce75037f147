"""When an affine may pass through an op that sits between it and the layer it folds into.

``f(s·x + t) = s·f(x) + t`` must hold per channel:

- linear, channel-preserving ops (GlobalAveragePool, Identity, Dropout at inference, layout
  ops): always; AveragePool: when every window's weights sum to 1, i.e. no padding or
  ``count_include_pad=0`` (else only for ``t = 0``);
- MaxPool, GlobalMaxPool: for ``s >= 0`` (max commutes with increasing maps; padding is −∞);
- Relu, LeakyRelu: ``f(s·x) = s·f(x)`` for ``s >= 0``, but no shift passes (callers move
  only the scale through them);
- Slice: when it does not cut the channel axis (each kept element keeps its channel);
- no-op Cast (to the type it has) and Identity: always.

The table of which op has which role is ``patterns.optable``.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..engine.constants import dropout_is_inference
from ..engine.foldmath import Affine
from ..engine.graph import GraphView, attribute, int_attribute, node_label
from ..engine.outcomes import Skip


def carrier_skip(
    view: GraphView, node: onnx.NodeProto, affine: Affine, opset: int, axis: int | None = None
) -> Skip | None:
    """Why ``affine`` (over ``axis`` of ``node``'s input) cannot pass ``node`` (None if it can)."""
    op = node.op_type
    if op == "Slice":
        return _slice_skip(view, node, axis)
    negative = bool(np.any(affine.scale < 0))
    shifted = bool(np.any(affine.shift != 0))
    if op in ("MaxPool", "GlobalMaxPool", "Relu", "LeakyRelu") and negative:
        return Skip("negative-scale", f"a negative scale does not commute with {op}")
    if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
        return Skip("unsupported-attribute", "MaxPool's Indices output is used")
    if (
        op == "AveragePool"
        and shifted
        and has_padding(node, view)
        and int_attribute(node, "count_include_pad", 0)
    ):
        return Skip("padded-average", "AveragePool averages padding zeros (count_include_pad=1)")
    if op == "Dropout" and not dropout_is_inference(view, node):
        return Skip("training-mode", "Dropout runs in training mode")
    return None


def _slice_skip(view: GraphView, node: onnx.NodeProto, axis: int | None) -> Skip | None:
    """A per-channel affine commutes with a Slice that leaves the channel axis whole."""
    shape = view.shape(node.input[0])
    if axis is None or shape is None:
        return Skip("axis-not-proven", f"rank of {node_label(node)}'s input is unknown")
    axes = sliced_axes(view, node, len(shape))
    if axes is None:
        return Skip(
            "axis-not-proven", f"{node_label(node)} slices axes that are computed at run time"
        )
    if axis in axes:
        return Skip("channel-axis-sliced", f"{node_label(node)} slices the channel axis {axis}")
    return None


def sliced_axes(view: GraphView, node: onnx.NodeProto, rank: int) -> set[int] | None:
    """The axes a ``Slice`` cuts (non-negative), or None when they are not constant.

    Slice-10+: inputs ``starts``, ``ends``, ``axes`` (default ``0…len(starts)−1``); Slice-1:
    the same as attributes.
    """
    axes: list[int] | None
    if view.opset < 10:
        starts = attribute(node, "starts")
        listed = attribute(node, "axes")
        axes = [int(a) for a in listed] if isinstance(listed, list) else None
        count = len(starts) if isinstance(starts, list) else None
    else:
        value = view.constant_value(node.input[1]) if len(node.input) > 1 else None
        count = None if value is None else int(np.size(value))
        axes_name = node.input[3] if len(node.input) > 3 else ""
        axes_value = view.constant_value(axes_name) if axes_name else None
        if axes_name and axes_value is None:
            return None
        axes = None if axes_value is None else [int(a) for a in np.ravel(axes_value)]
    if axes is None:
        if count is None:
            return None
        axes = list(range(count))
    return {a + rank if a < 0 else a for a in axes}


def has_padding(node: onnx.NodeProto, view: GraphView | None = None) -> bool:
    """Whether a Conv/pool node really pads its input (explicit pads, or SAME auto-padding
    that adds any border at all).

    ``SAME_*`` pads ``max((⌈in/stride⌉ − 1)·stride + (k − 1)·dilation + 1 − in, 0)`` per
    spatial axis: nothing when the dilated kernel is 1 wide (for any stride and size), and,
    with static input sizes from ``view``'s shapes, nothing when that total is 0.
    """
    pads = attribute(node, "pads")
    if isinstance(pads, list) and any(pads):
        return True
    auto_pad = attribute(node, "auto_pad", b"NOTSET")
    auto = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        return False
    kernel = _kernel_shape(node, view)
    if kernel is None:
        return True
    strides = attribute(node, "strides") or [1] * len(kernel)
    dilations = attribute(node, "dilations") or [1] * len(kernel)
    shape = view.shape(node.input[0]) if view is not None else None
    spatial = list(shape[2:]) if shape is not None and len(shape) == len(kernel) + 2 else None
    for axis, size in enumerate(kernel):
        extent = (size - 1) * int(dilations[axis]) + 1  # type: ignore[index]
        if extent == 1:
            continue
        length = spatial[axis] if spatial is not None else None
        if not isinstance(length, int):
            return True
        stride = int(strides[axis])  # type: ignore[index]
        if max((-(-length // stride) - 1) * stride + extent - length, 0) > 0:
            return True
    return False


def _kernel_shape(node: onnx.NodeProto, view: GraphView | None) -> list[int] | None:
    """Spatial kernel sizes: the attribute, or a Conv weight's dims after the first two."""
    kernel = attribute(node, "kernel_shape")
    if isinstance(kernel, list):
        return [int(k) for k in kernel]
    if view is None or len(node.input) < 2:
        return None
    weight = view.shape(node.input[1])
    if weight is None or len(weight) < 3 or not all(isinstance(d, int) for d in weight[2:]):
        return None
    return [int(d) for d in weight[2:]]  # type: ignore[arg-type]
