"""Shapes and element types of run-time tensors, per scope, from onnx's shape inference.

ONNX names are lexically scoped: an If/Loop/Scan body may reuse a sibling branch's names or
shadow an outer one. So shapes are kept in one table per graph (``ScopeTables``), keyed by
the graph's *scope path* — the chain of steps that leads to it from the main graph (by the
identity of each node and function, never a tensor name) — and a lookup in a body falls back
to the enclosing scope only for names the body does not define (``collections.ChainMap``).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import onnx

from .runtime_shapes import infer_with_runtime_shapes

Shape = tuple[int | str | None, ...]
# One step of a scope path, an identity never derived from a tensor name (names need not be
# unique: a Loop's first output may be '' on several nodes, IR-10 function overloads share
# ``domain.name``): ``("node", k, attribute, index)`` is graph ``index`` of ``attribute`` of
# the k-th node that carries graphs in the enclosing graph (folds never add, drop or reorder
# such nodes, and graphs are sorted before anything is keyed); ``("function", domain, name,
# overload)`` is a model-local function's body, by its IR identity.
ScopeStep = tuple[str, str | int, str, str | int]
ScopePath = tuple[ScopeStep, ...]
MAIN_SCOPE: ScopePath = ()

# Initializers up to this size keep their bytes in the inference skeleton (Reshape targets,
# axes...); larger ones become graph inputs of the same type and shape (no bytes copied).
SKELETON_LIMIT_BYTES = 4096


def function_scope(function: onnx.FunctionProto) -> ScopePath:
    """The scope of a model-local function's body: its ``(domain, name, overload)``."""
    return (("function", function.domain, function.name, function.overload),)


def scoped_graphs(
    graph: onnx.GraphProto, path: ScopePath
) -> Iterator[tuple[onnx.GraphProto, ScopePath]]:
    """Every graph attribute of every node of ``graph``, with its scope path."""
    carrier = 0
    for node in graph.node:
        found = False
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found = True
                yield attr.g, (*path, ("node", carrier, attr.name, 0))
            elif attr.type == onnx.AttributeProto.GRAPHS:
                found = True
                for index, sub in enumerate(attr.graphs):
                    yield sub, (*path, ("node", carrier, attr.name, index))
        carrier += found


@dataclass
class ScopeTables:
    """Shapes and element types of the names one graph defines (its own scope only)."""

    shapes: dict[str, Shape] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)


@dataclass
class ModelShapes:
    """Inferred tables of every scope of a model, as loaded (folds keep every kept shape)."""

    scopes: dict[ScopePath, ScopeTables] = field(default_factory=dict)

    def tables(self, path: ScopePath) -> ScopeTables:
        return self.scopes.setdefault(path, ScopeTables())

    def shapes(self, path: ScopePath) -> ChainMap[str, Shape]:
        """Shapes visible in scope ``path``: its own names first, then each enclosing scope."""
        return ChainMap(*(self.tables(path[:depth]).shapes for depth in range(len(path), -1, -1)))

    def types(self, path: ScopePath) -> ChainMap[str, int]:
        return ChainMap(*(self.tables(path[:depth]).types for depth in range(len(path), -1, -1)))

    def alias(self, path: ScopePath, name: str, like: str) -> None:
        """Record that the new tensor ``name`` has the shape and type of ``like``."""
        own = self.tables(path)
        shape = self.shapes(path).get(like)
        if shape is not None:
            own.shapes[name] = shape
        elem = self.types(path).get(like)
        if elem is not None:
            own.types[name] = elem


def infer_model_shapes(model: onnx.ModelProto) -> ModelShapes:
    """Run onnx's shape inference once on a skeleton of ``model``; tables per scope.

    The skeleton replaces large initializers by graph inputs of the same type, so no tensor
    bytes are copied (inference needs only their shapes).
    """
    skeleton = shape_skeleton(model)
    try:
        inferred = infer_with_runtime_shapes(skeleton)  # Reshape targets built at run time
    except Exception:  # noqa: BLE001 - a model onnx cannot infer just gives no shapes
        inferred = skeleton
    result = ModelShapes()
    _collect(inferred.graph, MAIN_SCOPE, result)
    # Declared shapes of the original take part too (inference may have dropped a scope).
    _collect(model.graph, MAIN_SCOPE, result, only_missing=True)
    return result


def _collect(
    graph: onnx.GraphProto, path: ScopePath, result: ModelShapes, *, only_missing: bool = False
) -> None:
    tables = result.tables(path)
    for value in [*graph.input, *graph.output, *graph.value_info]:
        shape = value_shape(value)
        if shape is not None and (not only_missing or value.name not in tables.shapes):
            tables.shapes[value.name] = shape
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            tables.types.setdefault(value.name, int(value.type.tensor_type.elem_type))
    for tensor in graph.initializer:
        tables.shapes.setdefault(tensor.name, tuple(int(d) for d in tensor.dims))
        tables.types.setdefault(tensor.name, int(tensor.data_type))
    for sub, sub_path in scoped_graphs(graph, path):
        _collect(sub, sub_path, result, only_missing=only_missing)


def value_shape(value: onnx.ValueInfoProto) -> Shape | None:
    """``(dims…)`` of a tensor value info: ints, symbolic names, or None for unknown dims."""
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in value.type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def shape_skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` without the bytes of its large initializers (they become typed inputs)."""
    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    graph = skeleton.graph
    source = model.graph
    graph.name = source.name
    graph.input.extend(source.input)
    for node in source.node:
        value = _large_constant_value(node)
        if value is None:
            graph.node.append(node)
        else:  # its bytes do not matter for shapes: a typed input stands in for it
            graph.input.append(
                onnx.helper.make_tensor_value_info(
                    node.output[0], value.data_type, list(value.dims)
                )
            )
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    declared = {value.name for value in source.input}
    for tensor in source.initializer:
        if _tensor_nbytes(tensor) <= SKELETON_LIMIT_BYTES and not tensor.external_data:
            graph.initializer.append(tensor)
        elif tensor.name not in declared:
            graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    return skeleton


def _large_constant_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor of a ``Constant`` node too large to copy into the skeleton, else None."""
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
        return None
    for attr in node.attribute:
        if attr.name == "value" and (
            _tensor_nbytes(attr.t) > SKELETON_LIMIT_BYTES or attr.t.external_data
        ):
            return attr.t
    return None


def _tensor_nbytes(tensor: onnx.TensorProto) -> int:
    count = int(np.prod(tensor.dims)) if tensor.dims else 1
    return count * 8  # an upper bound is all we need
