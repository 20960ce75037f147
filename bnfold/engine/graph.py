"""Read-only index of one graph: producers, every use of every name, where a name comes from.

A *use* is an input slot, not a node: ``Gemm(x, B, B)`` uses ``B`` twice; a graph output is a
use; a subgraph that reads an outer name (a capture) uses it too. A tensor may be rewritten
in place only when every one of its uses belongs to the fold (``editor``).

Names are lexically scoped: a ``GraphView`` indexes one graph, and ``outer`` is the view of
the enclosing graph. A name a body does not define resolves in the enclosing scope; a name it
does define shadows the outer one. Constant values are resolved the same way, one cache per
scope (``constants``).

A view is rebuilt after each round of folds (graphs are small compared to their tensors;
rebuilding is cheap and keeps the index trivially right).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx

from ..storage.naming import node_label
from .outcomes import Skip
from .shapes import MAIN_SCOPE, ScopePath, Shape


class ValueCache(Protocol):
    """What a view asks of its scope's constant cache (``constants.ConstantCache``): the index
    does not depend on how constants are evaluated, only that a cache can answer."""

    base_dir: Path | None
    values: dict[str, np.ndarray]
    too_deep: set[str]

    def value(self, view: GraphView, name: str) -> np.ndarray | None: ...

    def forget(self, names: Iterable[str]) -> None: ...


STANDARD_DOMAINS = ("", "ai.onnx")


def is_standard(node: onnx.NodeProto) -> bool:
    """A node of the default ONNX domain (spelled '' or 'ai.onnx')."""
    return node.domain in STANDARD_DOMAINS


def opset_version(model: onnx.ModelProto, domain: str = "") -> int:
    """The opset version ``model`` imports for ``domain`` ('' and 'ai.onnx' are the same)."""
    return opset_version_of(model.opset_import, domain=domain)


def opset_version_of(
    imports: Iterable[onnx.OperatorSetIdProto], *, domain: str = "", default: int = 0
) -> int:
    """The version ``imports`` give ``domain`` ('' and 'ai.onnx' are the same), or ``default``."""
    aliases = set(STANDARD_DOMAINS) if domain in STANDARD_DOMAINS else {domain}
    for entry in imports:
        if entry.domain in aliases:
            return int(entry.version)
    return default


class AttributeReference(Exception):
    """An attribute of a node in a function body that refers to the caller's (``ref_attr_name``,
    ``epsilon=$eps``): its value is set per call site, so no one value can be read here.

    The driver turns it into the refusal ``attribute-reference``; the call sites get their
    own folds when the function is inlined (``bnfold.engine.functions``).
    """

    def __init__(self, node: onnx.NodeProto, name: str, ref: str) -> None:
        super().__init__(
            f"{node.op_type} {node_label(node)} takes its {name} from the caller's attribute "
            f"{ref!r}, which is set per call site"
        )
        self.node, self.name, self.ref = node, name, ref


def attribute(node: onnx.NodeProto, name: str, default: object = None) -> object:
    """The value of ``node``'s attribute ``name``, or ``default`` when it is absent.

    Every attribute read goes through here. An attribute that refers to a function's caller
    (``ref_attr_name``) has no value of its own: reading it raises ``AttributeReference``
    (a default would be a wrong fold: ``beta`` read as 0, ``pads`` as none).
    """
    for attr in node.attribute:
        if attr.name == name:
            if attr.ref_attr_name:
                raise AttributeReference(node, name, attr.ref_attr_name)
            return onnx.helper.get_attribute_value(attr)
    return default


def has_attribute_references(node: onnx.NodeProto) -> bool:
    """Whether any attribute of ``node`` (not of its subgraphs) refers to the caller's."""
    return any(attr.ref_attr_name for attr in node.attribute)


def int_attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    value = attribute(node, name, default)
    return int(value) if isinstance(value, (int, float)) else default


def float_attribute(node: onnx.NodeProto, name: str, default: float) -> float:
    value = attribute(node, name, default)
    return float(value) if isinstance(value, (int, float)) else default


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """Every graph attribute of ``node`` (If branches, Loop/Scan bodies)."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def captured_names(graph: onnx.GraphProto) -> set[str]:
    """Names ``graph`` (at any depth) reads but does not define: its outer-scope captures.

    A body's own inputs, initializers and node outputs shadow outer names of the same
    spelling, so they are not captures.
    """
    defined = {value.name for value in graph.input}
    defined.update(tensor.name for tensor in graph.initializer)
    defined.update(tensor.values.name for tensor in graph.sparse_initializer)
    read: set[str] = set()
    for node in graph.node:
        defined.update(name for name in node.output if name)
    for node in graph.node:
        read.update(name for name in node.input if name)
        for sub in subgraphs(node):
            read |= captured_names(sub)
    read.update(value.name for value in graph.output)
    return read - defined


@dataclass(frozen=True)
class Use:
    """One read of a name: input ``slot`` of ``node`` (slot -1: a capture by a subgraph of
    ``node``); ``node`` None: the name is a graph output."""

    node: onnx.NodeProto | None
    slot: int

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Use) and self.node is other.node and self.slot == other.slot

    def __hash__(self) -> int:
        return hash((id(self.node), self.slot))


CAPTURE = -1


class GraphView:
    """An index over ``graph``: who produces each name and every use of it, in this scope."""

    def __init__(
        self,
        graph: onnx.GraphProto,
        *,
        ir_version: int,
        opset: int,
        cache: ValueCache,
        shapes: Callable[[], Mapping[str, Shape]],
        types: Callable[[], Mapping[str, int]],
        outer: GraphView | None = None,
        scope: ScopePath = MAIN_SCOPE,
    ) -> None:
        self.graph = graph
        self.ir_version = ir_version
        self.opset = opset
        self.cache = cache
        self.shapes = shapes
        self.types = types
        self.outer = outer
        self.scope = scope
        # The function this graph is the body of (``domain.name``), or None for a graph
        # (the driver sets it on a function body's view).
        self.function: str | None = None
        self.producer: dict[str, onnx.NodeProto] = {}
        self.uses: dict[str, list[Use]] = {}
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.sparse_names = {tensor.values.name for tensor in graph.sparse_initializer}
        self.graph_inputs = {value.name for value in graph.input}
        self.graph_outputs = {value.name for value in graph.output}
        for node in graph.node:
            for name in node.output:
                if name:
                    self.producer[name] = node
            for slot, name in enumerate(node.input):
                if name:
                    self.uses.setdefault(name, []).append(Use(node, slot))
            captures: set[str] = set()
            for sub in subgraphs(node):
                captures |= captured_names(sub)
            for name in sorted(captures):
                self.uses.setdefault(name, []).append(Use(node, CAPTURE))
        for name in self.graph_outputs:
            self.uses.setdefault(name, []).append(Use(None, 0))

    # ---- structure ---------------------------------------------------------------------
    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        """The single node reading ``name`` in exactly one slot, or None otherwise.

        A node that reads the name in two slots (``Add(x, x)``) is not a single use: an
        affine moved out of one slot would still be applied in the other.
        """
        uses = self.uses.get(name, ())
        if len(uses) != 1 or uses[0].node is None or uses[0].slot == CAPTURE:
            return None
        return uses[0].node

    def is_graph_output(self, name: str) -> bool:
        return name in self.graph_outputs

    def defines(self, name: str) -> bool:
        """``name`` is defined in this scope (input, initializer or node output)."""
        return (
            name in self.graph_inputs
            or name in self.initializers
            or name in self.producer
            or name in self.sparse_names
        )

    def is_overridable(self, name: str) -> bool:
        """A value that can be replaced at run time: a graph input, in whatever scope.

        From IR version 4 on, initializers need not be inputs, so one that is listed as an
        input is a default value the user may override. Below IR 4 the spec required every
        initializer to be listed as an input, and they are constants.
        """
        if name in self.graph_inputs and name in self.initializers:
            return self.ir_version >= 4
        if name in self.graph_inputs:
            return True
        if not self.defines(name) and self.outer is not None:
            return self.outer.is_overridable(name)
        return False

    def overridable_skip(self, name: str, subject: str, tail: str = "") -> Skip:
        """The refusal for a parameter or weight ``name`` that ``is_overridable``, true of
        where it comes from: a graph input (``param-is-graph-input``), or an input of a
        function body, bound per call site (``param-is-function-input``)."""
        view: GraphView | None = self
        while view is not None and not view.defines(name):
            view = view.outer
        if view is not None and view.function is not None:
            return Skip(
                "param-is-function-input",
                f"{subject} is an input of function {view.function}, bound per call site "
                "(not the same constant at every call)",
            )
        return Skip("param-is-graph-input", f"{subject} is a graph input{tail}")

    def origin(self, name: str) -> str:
        """Where ``name`` comes from, in words that are true of the model (report details)."""
        view: GraphView | None = self
        depth = 0
        while view is not None and not view.defines(name):
            view, depth = view.outer, depth + 1
        if view is None:
            return "undefined"
        where = "" if depth == 0 else " of an enclosing graph"
        if name in view.graph_inputs and view.function is not None:
            return f"an input of function {view.function}" + where
        if name in view.graph_inputs and not (name in view.initializers and view.ir_version < 4):
            return ("a graph input" if depth == 0 else "an input") + where
        if name in view.initializers or name in view.sparse_names:
            return "a constant" + where
        node = view.producer[name]
        if depth:
            return f"computed by {node.op_type} {node_label(node)}{where}"
        return f"computed by {node.op_type} {node_label(node)}"

    # ---- constants and shapes ----------------------------------------------------------
    def constant_value(self, name: str) -> np.ndarray | None:
        """The value of ``name`` when it is a constant in this scope, else None
        (see ``constants.ConstantCache.value``)."""
        return self.cache.value(self, name)

    def shape(self, name: str) -> Shape | None:
        return self.shapes().get(name)

    def elem_type(self, name: str) -> int | None:
        """Element type of ``name``: declared, an initializer's, or inferred."""
        if name in self.initializers:
            return int(self.initializers[name].data_type)
        found = self.types().get(name)
        if found:
            return int(found)
        return None


def topological_order(graph: onnx.GraphProto) -> list[int] | None:
    """Node indices in an order where every node follows the producers of what it reads
    (subgraph captures included), ties kept in file order; None when already sorted.

    ONNX requires sorted graphs, but the loader accepts any order (the checker's
    ``modelcheck`` proves there is no cycle), and folding walks producers first.
    """
    producer_index: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name:
                producer_index[name] = index
    needs: list[set[int]] = []
    for index, node in enumerate(graph.node):
        reads = {name for name in node.input if name}
        for sub in subgraphs(node):
            reads |= captured_names(sub)
        needs.append({producer_index[name] for name in reads if name in producer_index} - {index})
    if all(all(before < index for before in deps) for index, deps in enumerate(needs)):
        return None
    waiting = [len(deps) for deps in needs]
    readers: list[list[int]] = [[] for _ in needs]
    for index, deps in enumerate(needs):
        for before in deps:
            readers[before].append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for reader in readers[index]:
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, reader)
    return order if len(order) == len(needs) else None  # a cycle: leave it to the checker


def sort_topologically(graph: onnx.GraphProto) -> bool:
    """Reorder ``graph.node`` (and every subgraph's) topologically; whether anything moved."""
    moved = False
    order = topological_order(graph)
    if order is not None:
        nodes = [graph.node[index] for index in order]
        copies = []
        for node in nodes:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copies.append(copy)
        del graph.node[:]
        graph.node.extend(copies)
        moved = True
    for node in graph.node:
        for sub in subgraphs(node):
            moved = sort_topologically(sub) or moved
    return moved
