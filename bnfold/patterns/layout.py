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

from ..engine.graph import attribute
from .optable import ACTIVATION, NOOP, POOLING, ROLES, SLICE

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
) -> tuple[int, int, int] | None:
    """``(out_axis, repeat, tile)``: channel ``c`` of input axis ``in_axis`` becomes positions
    ``f`` of output axis ``out_axis`` with ``c = (f // repeat) mod C``.

    ``repeat`` and ``tile`` are 1 except where a reshape merges the channel axis with static
    axes next to it: with the axes after it, each channel repeats (``Flatten`` of
    ``[N, C, H, W]`` into ``[N, C·H·W]``: ``repeat = H·W``); with the axes before it, the
    channels tile (``Flatten`` of an NHWC ``[N, H, W, C]``: ``tile = H·W``). The merged axes
    ``a…b`` (``a ≤ in_axis ≤ b``) are the ones whose sizes multiply to the output axis and
    after which the element counts agree, all static.
    """
    if node.op_type in AXIS_PRESERVING:
        return in_axis, 1, 1
    if node.op_type in POOLING:
        return (in_axis, 1, 1) if in_axis == 1 else None
    if node.op_type == "Transpose":
        perm = attribute(node, "perm")
        in_shape = shapes.get(node.input[0])
        if perm is None:
            if in_shape is None:
                return None
            perm = list(range(len(in_shape) - 1, -1, -1))
        perm = list(perm)  # type: ignore[call-overload]
        return (perm.index(in_axis), 1, 1) if in_axis in perm else None
    in_shape = shapes.get(node.input[0])
    out_shape = shapes.get(node.output[0])
    if in_shape is None or out_shape is None or not 0 <= in_axis < len(in_shape):
        return None
    for out_axis, dim in enumerate(out_shape):
        out_inner = _static_product(out_shape[out_axis + 1 :])
        if not isinstance(dim, int) or out_inner is None:
            continue
        for last in range(in_axis, len(in_shape)):
            if _static_product(in_shape[last + 1 :]) != out_inner:
                continue
            for first in range(in_axis, -1, -1):
                span = _static_product(in_shape[first : last + 1])
                if span is None or span > dim:
                    break
                if span == dim:
                    repeat = _static_product(in_shape[in_axis + 1 : last + 1])
                    tile = _static_product(in_shape[first:in_axis])
                    assert repeat is not None and tile is not None
                    return out_axis, repeat, tile
    return None
