"""Follow an affine site's output forward to every linear layer that reads it.

The site's output may be read by several nodes, and each path may pass ops the affine
commutes with (``optable``: no-ops, layout ops, pooling, ``Slice`` of other axes) before a
layer that can take it (a consumer pattern's ``op_type``). The walk returns one ``Branch``
per such layer, with the affine *per feature at that layer's input*:

- a reshape that merges the channel axis with static axes after it repeats each channel's
  ``(s, t)`` over the features it became (``Flatten`` of ``[N, C, H, W]``: ``H·W`` each);
  with axes before it, the channels tile (``Transpose`` to NHWC, then ``Flatten``: feature
  ``f`` is channel ``f mod C``);
- a ``Split`` on the channel axis gives each output its own slice of ``(s, t)``
  (``s[a:b]``, ``t[a:b]`` for the output holding channels ``a…b−1``); on another axis each
  output gets the whole affine.

Every reader on the way must be one the fold can rewrite: a reader that nothing folds into,
a graph output, or a subgraph capture refuses the whole walk (the affine must vanish from
every path, or stay).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ..engine.foldmath import Affine
from ..engine.graph import CAPTURE, attribute, is_standard
from ..engine.outcomes import Skip
from ..engine.protocol import FoldContext, node_label
from ..engine.sites import AffineSite
from .carriers import carrier_skip
from .layout import trace_axis_forward
from .optable import ACTIVATION, role


@dataclass
class Branch:
    """One path from the site to a layer: ``passes`` in data order, then ``consumer``,
    which reads the last tensor in input ``slot``; ``affine`` acts on its ``axis``."""

    consumer: onnx.NodeProto
    slot: int
    passes: list[onnx.NodeProto]
    axis: int
    affine: Affine

    @property
    def reader(self) -> onnx.NodeProto:
        """The node that reads the site's output on this path."""
        return self.passes[0] if self.passes else self.consumer


def consumer_slots(ctx: FoldContext, node: onnx.NodeProto) -> tuple[int, ...]:
    """Input slots through which ``node`` can take an affine: its data input (0), and for
    ``MatMul(W, x)`` with a constant ``W`` the right operand (``W @ x``)."""
    if node.op_type == "MatMul" and ctx.view.constant_value(node.input[0]) is not None:
        return (1,)
    return (0,)


def walk_to_consumers(ctx: FoldContext, site: AffineSite) -> list[Branch] | Skip:
    """Every branch from ``site.output`` to a layer a consumer pattern targets, or why not."""
    from . import target_ops

    return _walk(ctx, target_ops("consumer"), site.output, site.axis, site.affine, [], top=True)


def _walk(
    ctx: FoldContext,
    targets: frozenset[str],
    name: str,
    axis: int,
    affine: Affine,
    passes: list[onnx.NodeProto],
    *,
    top: bool = False,
) -> list[Branch] | Skip:
    view = ctx.view
    if view.is_graph_output(name):
        return Skip("consumer-input-is-graph-output", f"{name!r} is a graph output and must stay")
    uses = view.uses.get(name, [])
    readers = [use.node for use in uses if use.node is not None]
    shared = len(uses) > 1
    if not uses:
        return Skip("no-linear-consumer", f"{name!r} is not read")
    if any(use.slot == CAPTURE for use in uses) or len({id(n) for n in readers}) != len(uses):
        return Skip("consumer-input-shared", f"{name!r} has {len(uses)} uses")
    branches: list[Branch] = []
    for use in uses:
        reader = use.node
        assert reader is not None
        found = _follow(ctx, targets, reader, use.slot, name, axis, affine, passes)
        if isinstance(found, Skip):
            if shared and found.reason == "no-linear-consumer":
                return Skip(
                    "consumer-input-shared", f"{name!r} has {len(uses)} readers; {found.detail}"
                )
            return found
        branches.extend(found)
    return branches


def _follow(
    ctx: FoldContext,
    targets: frozenset[str],
    reader: onnx.NodeProto,
    slot: int,
    name: str,
    axis: int,
    affine: Affine,
    passes: list[onnx.NodeProto],
) -> list[Branch] | Skip:
    view = ctx.view
    if not is_standard(reader):
        return Skip(
            "no-linear-consumer", f"{name!r} is read by custom op {reader.domain}.{reader.op_type}"
        )
    if reader.op_type in targets and slot in consumer_slots(ctx, reader):
        return [Branch(reader, slot, passes, axis, affine)]
    if slot == 0 and reader.op_type == "Split":
        return _split(ctx, targets, reader, axis, affine, passes)
    kind = role(reader, view.elem_type(name))
    if kind is None or kind == ACTIVATION or slot != 0:
        return Skip(
            "no-linear-consumer", f"{name!r} is read by {reader.op_type} {node_label(reader)}"
        )
    refusal = carrier_skip(view, reader, affine, ctx.opset, axis)
    if refusal is not None:
        return refusal
    traced = trace_axis_forward(reader, axis, ctx.shapes())
    if traced is None:
        return Skip(
            "axis-not-proven", f"cannot prove where {node_label(reader)} moves the channel axis"
        )
    new_axis, repeat, tile = traced
    if repeat > 1 or tile > 1:
        affine = Affine(
            np.tile(np.repeat(affine.scale, repeat), tile),
            np.tile(np.repeat(affine.shift, repeat), tile),
        )
    return _walk(ctx, targets, reader.output[0], new_axis, affine, [*passes, reader])


def _split(
    ctx: FoldContext,
    targets: frozenset[str],
    node: onnx.NodeProto,
    axis: int,
    affine: Affine,
    passes: list[onnx.NodeProto],
) -> list[Branch] | Skip:
    """Each output of a ``Split`` gets the affine (its slice of it, on the channel axis)."""
    shapes = ctx.shapes()
    in_shape = shapes.get(node.input[0])
    if in_shape is None:
        return Skip("axis-not-proven", f"rank of {node_label(node)}'s input is unknown")
    split_axis = int(attribute(node, "axis", 0))  # type: ignore[call-overload]
    split_axis += len(in_shape) if split_axis < 0 else 0
    slices: list[Affine] = []
    if split_axis == axis:
        start = 0
        for output in node.output:
            shape = shapes.get(output)
            width = shape[axis] if shape is not None and len(shape) > axis else None
            if not isinstance(width, int):
                return Skip("axis-not-proven", f"{node_label(node)}'s split sizes are not static")
            slices.append(
                Affine(affine.scale[start : start + width], affine.shift[start : start + width])
            )
            start += width
        if start != affine.channels:
            return Skip("channel-mismatch", f"{node_label(node)} splits {start} channels")
    else:
        slices = [affine] * len(node.output)
    branches: list[Branch] = []
    for output, part in zip(node.output, slices, strict=True):
        if not output or not ctx.view.uses.get(output):
            continue  # an unread output: nothing to fix
        found = _walk(ctx, targets, output, axis, part, [*passes, node])
        if isinstance(found, Skip):
            return found
        branches.extend(found)
    return branches
