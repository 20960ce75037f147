"""Walk back from an affine site to the linear layer that computes its input.

Between the two there may be, in data order:

1. per-channel constant ops (``Add``/``Sub``/``Mul``/``Div``; an exporter's bias add),
2. ops the affine passes through (the table in ``optable``): no-ops (``Identity``, a
   ``Cast`` to the type it has, inference ``Dropout``), layout ops (the axis is traced),
   channel-preserving linear ops, ``Slice`` of other axes, max ops (a non-negative scale and
   any shift), and, when the caller allows it, positive-homogeneous activations (``Relu``,
   ``LeakyRelu``) that commute with the non-negative scale only.

The per-channel constants may also sit after no-ops (``Conv → Cast → Add(bias) → BN``):
a no-op keeps shape and values, so the constant acts on the layer's output as it is.

Every tensor on the way must be read by the next node alone and not be a graph output:
folding removes or rewires it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from ..engine.elementwise import constant_operand
from ..engine.graph import GraphView, is_standard
from ..engine.outcomes import Skip
from ..engine.protocol import node_label
from ..engine.sites import AffineSite
from .optable import ACTIVATION, NOOP, ROLES, role

ACTIVATIONS = frozenset(op for op, kind in ROLES.items() if kind == ACTIVATION)


@dataclass
class Chain:
    """``linear → elementwise… → passes… → site``, each list in data-flow order."""

    linear: onnx.NodeProto
    elementwise: list[onnx.NodeProto] = field(default_factory=list)
    passes: list[onnx.NodeProto] = field(default_factory=list)
    # Nodes that read only the shape or type of a tensor on the way (``Shape``, ``Size``,
    # ``CastLike``'s second input): folding keeps both, so they are rewired to the site's
    # output instead of blocking the fold.
    shape_readers: list[onnx.NodeProto] = field(default_factory=list)

    @property
    def through(self) -> list[str]:
        return [node.op_type for node in [*self.elementwise, *self.passes]]

    @property
    def activations(self) -> list[onnx.NodeProto]:
        return [node for node in self.passes if node.op_type in ACTIVATIONS]


def reads_only_metadata(node: onnx.NodeProto, name: str) -> bool:
    """``node`` uses nothing of ``name`` but its shape or element type."""
    if node.op_type in ("Shape", "Size"):
        return True
    return node.op_type == "CastLike" and node.input[0] != name


def targets(side: str) -> frozenset[str]:
    """Op types the registered patterns fold into on ``side`` (``producer``/``consumer``)."""
    from . import target_ops

    return target_ops(side)


@dataclass(frozen=True)
class WalkBack:
    """One walk back from a site, read two ways: ``direct``, the chain with no activation on
    the way (or why there is none), and ``through``, the chain that may pass activations."""

    direct: Chain | Skip
    through: Chain | Skip


def walk_to_linear(view: GraphView, site: AffineSite) -> Chain | Skip:
    """The chain from the linear producer of ``site.input`` to the site, with no activation on
    the way, or why there is none."""
    return walk_back(view, site, through_activations=False).direct


def walk_back(view: GraphView, site: AffineSite, *, through_activations: bool = True) -> WalkBack:
    """The chains from the linear producer of ``site.input`` to the site, or why there are none.

    The walk passes activations (unless ``through_activations`` is False) and notes where a
    walk that may not would have stopped, so both readings cost one walk.
    """
    name, reader = site.input, site.nodes[0]
    elementwise: list[onnx.NodeProto] = []
    passes: list[onnx.NodeProto] = []
    shape_readers: list[onnx.NodeProto] = []
    linear_ops = targets("producer")
    direct: Chain | Skip | None = None  # decided at the first activation, else at the end

    def end(found: Chain | Skip) -> WalkBack:
        return WalkBack(found if direct is None else direct, found)

    while True:
        if view.is_graph_output(name):
            return end(
                Skip("producer-output-is-graph-output", f"{name!r} is a graph output and must stay")
            )
        node = view.producer.get(name)
        if node is None:
            return end(Skip("no-linear-producer", f"input {name!r} is {view.origin(name)}"))
        if not is_standard(node):
            return end(
                Skip(
                    "no-linear-producer",
                    f"input comes from custom op {node.domain}.{node.op_type}",
                )
            )
        operand = None if node.op_type in linear_ops else constant_operand(view, node)
        kind = role(node, view.elem_type(node.input[0])) if node.input else None
        stop = Skip("no-linear-producer", f"input comes from {node.op_type} {node_label(node)}")
        if kind == ACTIVATION and direct is None:
            direct = stop  # a walk that may not pass activations ends here
            if not through_activations:
                return end(stop)
        if node.op_type not in linear_ops and operand is None and kind is None:
            return end(stop)
        # Only now is sharing the reason: the producer is one a fold could go into or through.
        uses = view.uses.get(name, [])
        metadata = [
            use.node
            for use in uses
            if use.node is not None
            and use.node is not reader
            and use.slot >= 0
            and reads_only_metadata(use.node, name)
        ]
        data_uses = [use for use in uses if all(use.node is not other for other in metadata)]
        if len(data_uses) != 1 or data_uses[0].node is not reader:
            return end(Skip("producer-output-shared", f"{name!r} has {len(uses)} uses"))
        shape_readers.extend(metadata)
        if node.op_type in linear_ops:
            if shape_readers and passes:
                # Only tensors that keep their shape end to end are rewired; not traced here.
                return end(
                    Skip("producer-output-shared", "a tensor on the way is also read for its shape")
                )
            return end(Chain(node, elementwise, passes, shape_readers))
        if operand is not None:
            elementwise.insert(0, node)
            name = node.input[1 - operand[0]]
        else:
            if elementwise and kind != NOOP:
                # A constant after such an op broadcasts in another layout: not traced. A
                # no-op keeps shape and values, so the constant acts on the layer's output.
                return end(
                    Skip(
                        "unsupported-chain",
                        f"constant {elementwise[0].op_type} follows {node.op_type}",
                    )
                )
            passes.insert(0, node)
            name = node.input[0]
        reader = node
