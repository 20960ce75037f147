"""No-op ``Cast`` removal: a ``Cast`` whose input already has the element type ``to`` names.

Such a Cast computes the identity for every runtime (exporters write them: Keras 3 on torch
writes one float→float Cast per layer boundary). It is removed from the main graph when its
input's element type is known (declared, an initializer, or from shape inference) and equals
``to``; its readers read the input instead. A Cast whose output is a graph output keeps that
name: the input's producer (a named node: reports label an unnamed one by its output) writes
the output name directly. Left alone: Casts writing a graph output from a graph input, an
initializer, another graph output or an unnamed node's output, and
any Cast whose names a subgraph, training info or a quantization annotation mentions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import onnx

from .graph import subgraphs


def _to(node: onnx.NodeProto) -> int | None:
    for attribute in node.attribute:
        if attribute.name == "to":
            return int(attribute.i)
    return None


def _named(node: onnx.NodeProto | None) -> bool:
    # An unnamed node is labelled by its output in reports: that name must not change.
    return node is not None and bool(node.name)


def _names_in_subgraphs(graph: onnx.GraphProto) -> set[str]:
    names: set[str] = set()

    def walk(g: onnx.GraphProto) -> None:
        for node in g.node:
            names.update(node.input)
            names.update(node.output)
            for sub in subgraphs(node):
                walk(sub)

    for node in graph.node:
        for sub in subgraphs(node):
            walk(sub)
    return names


def remove_noop_casts(model: onnx.ModelProto, known: Callable[[], Mapping[str, int]]) -> int:
    """Remove the main graph's no-op Casts in place (``known()``: element type by name, asked
    only when the graph has a Cast); return how many were removed."""
    if len(model.training_info) or not any(n.op_type == "Cast" for n in model.graph.node):
        return 0
    types = known()
    graph = model.graph
    protected = _names_in_subgraphs(graph)
    for annotation in graph.quantization_annotation:
        protected.add(annotation.tensor_name)
    fixed = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    removed = 0
    while True:
        outputs = {v.name for v in graph.output}
        producers = {name: node for node in graph.node for name in node.output if name}
        target = None
        for node in graph.node:
            if node.op_type != "Cast" or node.domain not in ("", "ai.onnx"):
                continue
            if len(node.input) != 1 or len(node.output) != 1:
                continue
            source, result = node.input[0], node.output[0]
            if not source or not result or {source, result} & protected:
                continue
            to = _to(node)
            if to is None or types.get(source) != to:
                continue
            if result in outputs and (
                source in fixed or source in outputs or not _named(producers.get(source))
            ):
                continue
            target = node
            break
        if target is None:
            return removed
        _remove(graph, target)
        removed += 1


def _remove(graph: onnx.GraphProto, cast: onnx.NodeProto) -> None:
    source, result = cast.input[0], cast.output[0]
    outputs = {v.name for v in graph.output}
    index = next(i for i, node in enumerate(graph.node) if node is cast)
    del graph.node[index]
    if result in outputs:
        # Keep the graph output's name: whatever wrote or read ``source`` now uses ``result``.
        old, new = source, result
    else:
        old, new = result, source
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for index in range(len(graph.value_info) - 1, -1, -1):
        if graph.value_info[index].name == old:
            del graph.value_info[index]
