"""Follow one axis through layout and channel-preserving ops, or fail when it cannot be proven.

- Element-wise ops, no-op ``Cast``/``Identity`` and ``Slice`` keep every axis where it is;
  pooling ops too, but only axis 1 is a per-channel axis for them.

- ``Transpose``: output axis ``b`` is input axis ``perm[b]``.
- Reshape-like ops (``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``): output axis ``b``
  is input axis ``a`` when ``in[a] == out[b]`` and the elements after them match,
  ``prod(in[a+1:]) == prod(out[b+1:])``, all static. Then the element strides agree, so
  channel ``c`` of the output is exactly channel ``c`` of the input. A reshape that only
  happens to give equal dimensions (the square case) fails the stride test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import onnx

from .graph import attribute
from .patterns.optable import ACTIVATION, NOOP, POOLING, ROLES, SLICE

Shape = tuple[int | str | None, ...]

# Ops whose output has the input's axes in the same places (``Slice`` shortens some).
AXIS_PRESERVING = frozenset(op for op, kind in ROLES.items() if kind in (NOOP, ACTIVATION, SLICE))


def trace_axis_back(node: onnx.NodeProto, out_axis: int, shapes: Mapping[str, Shape]) -> int | None:
    """The input axis of ``node`` that becomes ``out_axis`` of its output, if provable."""
    if node.op_type in AXIS_PRESERVING:
        return out_axis
    if node.op_type in POOLING:
        return out_axis if out_axis == 1 else None
    in_shape = shapes.get(node.input[0])
    out_shape = shapes.get(node.output[0])
    if node.op_type == "Transpose":
        rank = (
            len(in_shape)
            if in_shape is not None
            else (len(out_shape) if out_shape is not None else None)
        )
        perm = attribute(node, "perm")
        if perm is None:
            if rank is None:
                return None
            perm = list(range(rank - 1, -1, -1))
        perm = list(perm)  # type: ignore[call-overload]
        return int(perm[out_axis]) if 0 <= out_axis < len(perm) else None
    if in_shape is None or out_shape is None or not 0 <= out_axis < len(out_shape):
        return None
    target = out_shape[out_axis]
    out_tail = _static_product(out_shape[out_axis + 1 :])
    if not isinstance(target, int) or out_tail is None:
        return None
    for in_axis, dim in enumerate(in_shape):
        if dim == target and _static_product(in_shape[in_axis + 1 :]) == out_tail:
            return in_axis
    return None


def _static_product(dims: Shape) -> int | None:
    if not all(isinstance(d, int) for d in dims):
        return None
    return math.prod(dims)  # type: ignore[arg-type]


def trace_axis_forward(
    node: onnx.NodeProto, in_axis: int, shapes: Mapping[str, Shape]
) -> tuple[int, int] | None:
    """``(out_axis, repeat)``: channel ``c`` of input axis ``in_axis`` becomes the ``repeat``
    consecutive positions ``c·repeat … c·repeat + repeat − 1`` of output axis ``out_axis``.

    ``repeat`` is 1 except where a reshape merges the channel axis with the static axes after
    it (``Flatten`` of ``[N, C, H, W]`` into ``[N, C·H·W]``: ``repeat = H·W``).
    """
    if node.op_type in AXIS_PRESERVING:
        return in_axis, 1
    if node.op_type in POOLING:
        return (in_axis, 1) if in_axis == 1 else None
    if node.op_type == "Transpose":
        perm = attribute(node, "perm")
        in_shape = shapes.get(node.input[0])
        if perm is None:
            if in_shape is None:
                return None
            perm = list(range(len(in_shape) - 1, -1, -1))
        perm = list(perm)  # type: ignore[call-overload]
        return (perm.index(in_axis), 1) if in_axis in perm else None
    in_shape = shapes.get(node.input[0])
    out_shape = shapes.get(node.output[0])
    if in_shape is None or out_shape is None or not 0 <= in_axis < len(in_shape):
        return None
    channels = in_shape[in_axis]
    inner = _static_product(in_shape[in_axis + 1 :])
    if not isinstance(channels, int) or inner is None:
        return None
    for out_axis, dim in enumerate(out_shape):
        out_inner = _static_product(out_shape[out_axis + 1 :])
        if dim == channels and out_inner == inner:
            return out_axis, 1
        if dim == channels * inner and out_inner == 1 and inner > 1:
            return out_axis, inner
    return None
