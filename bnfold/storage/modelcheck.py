"""Refuse a model that is not valid ONNX before any fold looks at it, naming what is wrong.

What is checked, in this order (each failure is one ``ModelLoadError`` line, exit 3):

1. every tensor name is produced once (SSA): by one graph input, initializer or node output;
2. every node input and graph output is produced by something in scope (no dangling reads);
3. the nodes form no cycle (an acyclic graph in any order is accepted: onnxruntime sorts it);
4. every node passes onnx's per-node checker: the op exists in its domain at the imported
   opset, its inputs, outputs and attributes fit the schema, its domain is imported.
   Ops of custom domains are accepted as they are (bnfold keeps them untouched);
5. every tensor holds as many bytes as its shape and type need (``check_tensor_sizes``, run
   after external data is read).

Why not ``onnx.checker.check_model``: it serialises the whole model once more (a copy of every
weight, impossible past 2 GiB), and it refuses models onnxruntime runs: graph outputs whose
type has no shape field, nodes that are not in topological order. The per-node checker gives
the same schema checks on small protos. Everything here is linear in the model's size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import onnx
from onnx import helper
from onnx.onnx_cpp2py_export import checker as onnx_checker

from ..errors import ModelLoadError
from . import dtypes

FIX_HINT = "repair the model or re-export it; bnfold only reads valid ONNX"


def check_structure(model: onnx.ModelProto, role: str, where: str) -> None:
    """Checks 1-4 above on ``model`` (external data need not be loaded)."""
    context = onnx_checker.CheckerContext()
    context.ir_version = model.ir_version
    context.opset_imports = {
        ("" if entry.domain == "ai.onnx" else entry.domain): entry.version
        for entry in model.opset_import
    }
    _check_graph(model.graph, frozenset(), context, _Place(role, where, ""))


def check_tensor_sizes(tensors: Iterable[onnx.TensorProto], role: str, where: str) -> None:
    """Check 5: each tensor's data is exactly as long as its shape and type need."""
    for tensor in tensors:
        if any(dim < 0 for dim in tensor.dims):
            _fail(_Place(role, where, ""), f"tensor {tensor.name!r} has a negative dimension")
        count = 1
        for dim in tensor.dims:
            count *= dim
        # None for STRING and unknown types; packed for the sub-byte ones (int4, float4, ...).
        need = dtypes.stored_nbytes(tensor.data_type, count)
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            # Bytes still in a file (the loader checked where): the declared length must fit.
            declared = {e.key: e.value for e in tensor.external_data}.get("length")
            if need is None or not declared or not declared.isdigit():
                continue
            have = int(declared)
        elif need is None or not tensor.HasField("raw_data"):
            _check_tensor_with_onnx(tensor, role, where)
            continue
        else:
            have = len(tensor.raw_data)
        if have != need:
            dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type).name
            _fail(
                _Place(role, where, ""),
                f"tensor {tensor.name!r} holds {have} bytes, its shape {list(tensor.dims)} of "
                f"{dtype} needs {need}",
                hint="the file or its external data is truncated or corrupt: re-export the model",
            )


class _Place:
    """Where a problem is, for the message: the role, the file, and the subgraph path."""

    def __init__(self, role: str, where: str, scope: str) -> None:
        self.role, self.where, self.scope = role, where, scope

    def inside(self, node: onnx.NodeProto, attribute: str) -> _Place:
        return _Place(self.role, self.where, f"{self.scope}in {_label(node)}.{attribute}: ")


def _fail(place: _Place, problem: str, hint: str = FIX_HINT) -> None:
    raise ModelLoadError(
        f"{place.role} is not a valid ONNX model ({place.where}): {place.scope}{problem}",
        hint=hint,
    )


def _check_graph(
    graph: onnx.GraphProto,
    outer: frozenset[str],
    context: onnx_checker.CheckerContext,
    place: _Place,
) -> None:
    producers = _producers(graph, place)
    visible = outer | frozenset(producers)  # what this graph's subgraphs may read
    for node in graph.node:
        for name in node.input:
            if name and name not in visible:
                _fail(
                    place,
                    f"node {_label(node)} reads {name!r}, which no node, initializer or graph "
                    "input produces",
                )
    for output in graph.output:
        if output.name not in visible:
            _fail(place, f"graph output {output.name!r} is produced by nothing")
    _check_acyclic(graph, producers, place)
    passed: set[bytes] = set()
    for node in graph.node:
        _check_node_schema(node, context, place, passed)
        for attribute in node.attribute:
            for sub in _graphs_of(attribute):
                _check_graph(sub, visible, context, place.inside(node, attribute.name))


def _producers(graph: onnx.GraphProto, place: _Place) -> dict[str, str]:
    """Each name this graph defines -> what defines it; a name defined twice is an error."""
    producers: dict[str, str] = {}
    for value in graph.input:
        _define(producers, value.name, "graph input", place)
    for tensor in [*graph.initializer, *(s.values for s in graph.sparse_initializer)]:
        # An initializer may also be listed as a graph input: that is its overridable default.
        if producers.get(tensor.name) != "graph input":
            _define(producers, tensor.name, "initializer", place)
    for node in graph.node:
        for name in node.output:
            if name:  # "" marks an optional output that is not produced
                _define(producers, name, f"node {_label(node)}", place)
    return producers


def _define(producers: dict[str, str], name: str, what: str, place: _Place) -> None:
    if name in producers:
        _fail(place, f"tensor {name!r} is produced twice, by {producers[name]} and by {what}")
    producers[name] = what


def _check_acyclic(graph: onnx.GraphProto, producers: dict[str, str], place: _Place) -> None:
    """Kahn's algorithm; on failure name one cycle. Reads captured by subgraphs count."""
    producer_index = {
        name: index for index, node in enumerate(graph.node) for name in node.output if name
    }
    depends_on: list[set[int]] = []
    for node in graph.node:
        reads = set(node.input) | _captured_names(node)
        depends_on.append({producer_index[n] for n in reads if n in producer_index})
    readers: list[list[int]] = [[] for _ in graph.node]
    waiting = [len(deps) for deps in depends_on]
    for index, deps in enumerate(depends_on):
        for dep in deps:
            readers[dep].append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    done = 0
    while ready:
        index = ready.pop()
        done += 1
        for reader in readers[index]:
            waiting[reader] -= 1
            if waiting[reader] == 0:
                ready.append(reader)
    if done == len(graph.node):
        return
    cycle = _one_cycle(depends_on, [index for index, count in enumerate(waiting) if count])
    names = " -> ".join(_label(graph.node[index]) for index in cycle)
    _fail(place, f"the graph has a cycle: {names}")


def _one_cycle(depends_on: list[set[int]], stuck: list[int]) -> list[int]:
    """Walk dependencies among the nodes Kahn could not order until a node repeats.

    Every such node waits on another such node, so the walk always closes a cycle.
    """
    stuck_set = set(stuck)
    path: list[int] = []
    seen: dict[int, int] = {}
    index = stuck[0]
    while index not in seen:
        seen[index] = len(path)
        path.append(index)
        index = min(dep for dep in depends_on[index] if dep in stuck_set)
    cycle = path[seen[index] :]
    return [*cycle, cycle[0]][::-1]  # reversed: in the direction data flows


def _captured_names(node: onnx.NodeProto) -> set[str]:
    """Names the node's subgraphs read at any depth (an over-approximation of captures)."""
    names: set[str] = set()
    for attribute in node.attribute:
        for sub in _graphs_of(attribute):
            for inner in sub.node:
                names.update(name for name in inner.input if name)
                names |= _captured_names(inner)
            names.update(output.name for output in sub.output)
    return names


def _check_node_schema(
    node: onnx.NodeProto,
    context: onnx_checker.CheckerContext,
    place: _Place,
    passed: set[bytes],
) -> None:
    """onnx's per-node checker; nodes that differ only in tensor names are checked once."""
    stub = _without_subgraphs(node)
    if stub.domain == "ai.onnx" or _has_external_tensor(stub):
        if stub is node:
            stub = onnx.NodeProto()
            stub.CopyFrom(node)
        if stub.domain == "ai.onnx":  # the default domain's other spelling (context knows '')
            stub.domain = ""
        # onnx's checker would look for external bytes relative to the working directory;
        # the loader has vetted their location and size already, so only the schema is left.
        for attribute in stub.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR and _is_external(attribute.t):
                attribute.t.CopyFrom(
                    helper.make_tensor(attribute.t.name, attribute.t.data_type, [], [0])
                )
    signature = _anonymous(stub).SerializeToString()
    if signature in passed:
        return
    try:
        onnx_checker.check_node(stub.SerializeToString(), context, _LEXICAL)
    except onnx_checker.ValidationError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        _fail(place, f"node {_label(node)} ({node.op_type}): {detail}")
    passed.add(signature)


def _is_external(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL


def _has_external_tensor(node: onnx.NodeProto) -> bool:
    return any(
        attribute.type == onnx.AttributeProto.TENSOR and _is_external(attribute.t)
        for attribute in node.attribute
    )


def _anonymous(node: onnx.NodeProto) -> onnx.NodeProto:
    """``node`` with every name replaced by a placeholder (empty names, i.e. omitted optional
    inputs and outputs, stay empty: the schema check depends on them)."""
    copy = onnx.NodeProto()
    copy.op_type, copy.domain = node.op_type, node.domain
    copy.input.extend("i" if name else "" for name in node.input)
    copy.output.extend("o" if name else "" for name in node.output)
    copy.attribute.extend(node.attribute)
    return copy


# Subgraphs are checked by ``_check_graph`` with their outer scope; the per-node checker sees
# a stub in their place (its own scope tracking cannot be given the outer names from Python).
_LEXICAL = onnx_checker.LexicalScopeContext()


def _without_subgraphs(node: onnx.NodeProto) -> onnx.NodeProto:
    if not any(_graphs_of(attribute) for attribute in node.attribute):
        return node
    stub = onnx.NodeProto()
    stub.op_type, stub.domain, stub.name = node.op_type, node.domain, node.name
    stub.input.extend(node.input)
    stub.output.extend(node.output)
    for attribute in node.attribute:
        copy = stub.attribute.add()
        if attribute.type == onnx.AttributeProto.GRAPH:
            copy.name, copy.type = attribute.name, attribute.type
            copy.g.name = attribute.g.name or "stub"
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            copy.name, copy.type = attribute.name, attribute.type
            for graph in attribute.graphs:
                copy.graphs.add().name = graph.name or "stub"
        else:
            copy.CopyFrom(attribute)
    return stub


def _graphs_of(attribute: onnx.AttributeProto) -> Iterator[onnx.GraphProto]:
    if attribute.type == onnx.AttributeProto.GRAPH:
        yield attribute.g
    elif attribute.type == onnx.AttributeProto.GRAPHS:
        yield from attribute.graphs


def _check_tensor_with_onnx(tensor: onnx.TensorProto, role: str, where: str) -> None:
    context = onnx_checker.CheckerContext()
    context.ir_version = onnx.IR_VERSION
    try:
        onnx_checker.check_tensor(tensor.SerializeToString(), context)
    except onnx_checker.ValidationError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        _fail(_Place(role, where, ""), f"tensor {tensor.name!r}: {detail}")


def _label(node: onnx.NodeProto) -> str:
    return (
        repr(node.name)
        if node.name
        else f"<{node.op_type}:{node.output[0] if node.output else ''}>"
    )
