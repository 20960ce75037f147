"""Values of constant tensors: initializers, ``Constant`` nodes, and small constant recipes.

Exporters build parameters from small subgraphs (``ConstantOfShape``, ``Cast``, ``Expand``,
``Reshape`` of constants...). Those are evaluated with onnx's reference evaluator *in the
model's opset* (a node means what its opset says: ``Softmax``-11 is not ``Softmax``-13), never
through ops whose result is not a pure function of constant inputs (random ops, training-mode
``Dropout``) and never through quantization (``QuantizeLinear``/``DequantizeLinear``: a
quantized weight must stay quantized; see ``quantized_source``).

One ``ConstantCache`` per scope: names are lexically scoped, so a value is cached under the
scope that defines it, and a body's lookup of a captured name goes to the enclosing scope.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..storage.lazyio import tensor_array
from .graph import (
    AttributeReference,
    GraphView,
    attribute,
    int_attribute,
    is_standard,
    node_label,
)

# Nodes whose value is not a pure function of their inputs must never be evaluated.
NONDETERMINISTIC_OPS = frozenset(
    {
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    }
)
# A weight computed by these is quantized: evaluating it would dequantize the layer.
QUANTIZATION_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger"}
)
# Ops that carry subgraphs are never evaluated as constants.
SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})
# A constant recipe deeper than this is left alone: bnfold evaluates parameter recipes, not
# whole networks. A deeper one is reported as such (``recipe_too_deep``), not as run time.
MAX_CONSTANT_DEPTH = 8
# Do not materialise constant subgraph results larger than this (elements).
MAX_CONSTANT_ELEMENTS = 1 << 28
# Larger values are read (or evaluated) again each time rather than kept: a fold reads
# each weight once or twice, and caching every weight would double a model's memory.
CACHE_LIMIT_BYTES = 1 << 20


@dataclass
class ConstantCache:
    """Values of the constants one scope defines; ``base_dir`` holds external tensor bytes."""

    base_dir: Path | None = None
    values: dict[str, np.ndarray] = field(default_factory=dict)
    too_deep: set[str] = field(default_factory=set)

    def forget(self, names: Iterable[str]) -> None:
        for name in names:
            self.values.pop(name, None)

    def value(self, view: GraphView, name: str) -> np.ndarray | None:
        return _constant(view, name, 0)


def standalone_view(graph: onnx.GraphProto, *, ir_version: int, opset: int) -> GraphView:
    """A view of one main graph with no declared shapes (tests, one-off lookups)."""
    return GraphView(
        graph,
        ir_version=ir_version,
        opset=opset,
        cache=ConstantCache(),
        shapes=dict,
        types=dict,
    )


def _owner(view: GraphView, name: str) -> GraphView | None:
    """The view of the innermost scope that defines ``name``."""
    current: GraphView | None = view
    while current is not None and not current.defines(name):
        current = current.outer
    return current


def _constant(view: GraphView, name: str, depth: int) -> np.ndarray | None:
    if not name:
        return None
    owner = _owner(view, name)
    if owner is None:
        return None
    cache = owner.cache
    if name in cache.values:
        return cache.values[name]
    try:
        value = _compute(owner, name, depth)
    except AttributeReference:  # a node reads its caller's attribute: a value per call
        return None
    if value is not None and value.nbytes <= CACHE_LIMIT_BYTES:
        cache.values[name] = value
    return value


def _compute(view: GraphView, name: str, depth: int) -> np.ndarray | None:
    if name in view.initializers:
        if view.is_overridable(name):
            return None
        return tensor_array(view.initializers[name], view.cache.base_dir)
    node = view.producer.get(name)
    if node is None:
        return None  # a graph input (or a sparse initializer: never a BN parameter)
    if depth >= MAX_CONSTANT_DEPTH:
        view.cache.too_deep.add(name)
        return None
    if not is_standard(node) or node.op_type in NONDETERMINISTIC_OPS:
        return None
    if node.op_type in SUBGRAPH_OPS or node.op_type in QUANTIZATION_OPS:
        return None
    if node.op_type == "Constant":
        return constant_node_value(node, view.cache.base_dir)
    if node.op_type == "Dropout" and not dropout_is_inference(view, node):
        return None
    if node.op_type == "CastLike":
        return _cast_like(view, node, depth)
    if node.op_type == "Shape" and _constant(view, node.input[0], depth + 1) is None:
        return _static_shape(view, node)
    inputs: list[np.ndarray | None] = []
    for input_name in node.input:
        if not input_name:
            inputs.append(None)
            continue
        value = _constant(view, input_name, depth + 1)
        if value is None:
            if _is_too_deep(view, input_name):
                view.cache.too_deep.add(name)
            return None
        inputs.append(value)
    return evaluate_node(node, inputs, name, view.opset)


def _is_too_deep(view: GraphView, name: str) -> bool:
    owner = _owner(view, name)
    return owner is not None and name in owner.cache.too_deep


def dropout_is_inference(view: GraphView, node: onnx.NodeProto) -> bool:
    """Dropout is the identity at inference: is_test=1 (opset < 7), or no true training_mode."""
    if view.opset < 7:
        return bool(attribute(node, "is_test", 0))
    if len(node.input) > 2 and node.input[2]:
        value = _constant(view, node.input[2], 1)
        return value is not None and not bool(np.asarray(value).any())
    return True


def _cast_like(view: GraphView, node: onnx.NodeProto, depth: int) -> np.ndarray | None:
    """CastLike reads only the *type* of its second input, which may be a run-time tensor
    (torch's dynamo exporter casts a Conv's zero bias like the graph input)."""
    value = _constant(view, node.input[0], depth + 1)
    if value is None:
        return None
    target = view.elem_type(node.input[1])
    if target is None:
        return None
    return value.astype(onnx.helper.tensor_dtype_to_np_dtype(target))


def _static_shape(view: GraphView, node: onnx.NodeProto) -> np.ndarray | None:
    """``Shape`` of a run-time tensor whose requested dims shape inference proved static
    (torch's dynamo exporter sizes a BN's default γ/β by ``Shape(x)[1:2]``)."""
    shape = view.shape(node.input[0])
    if shape is None:
        return None
    rank = len(shape)
    start = int_attribute(node, "start", 0) if view.opset >= 15 else 0
    end = int_attribute(node, "end", rank) if view.opset >= 15 else rank
    start, end = (max(0, min(rank, i + rank if i < 0 else i)) for i in (start, end))
    dims = shape[start:end]
    if not all(isinstance(d, int) for d in dims):
        return None
    return np.array(dims, dtype=np.int64)


def constant_node_value(node: onnx.NodeProto, base_dir: Path | None) -> np.ndarray | None:
    """The value of a ``Constant`` node; external bytes are read only from ``base_dir``.

    In a function body a ``Constant`` may take its value from the caller's attribute
    (``ref_attr_name``): that differs per call and is no constant."""
    for attr in node.attribute:
        if attr.ref_attr_name:
            return None
        if attr.name == "value":
            return tensor_array(attr.t, base_dir)
        if attr.name == "value_float":
            return np.array(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.array(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.array(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
    return None  # sparse and string constants are never BN parameters or weights


def evaluate_node(
    node: onnx.NodeProto, inputs: list[np.ndarray | None], wanted: str, opset: int
) -> np.ndarray | None:
    """Evaluate one standard node on constant inputs, with the meaning of ``opset``."""
    from onnx.reference import ReferenceEvaluator

    if not evaluable(node.op_type, opset):
        return None

    feeds = {
        name: value
        for name, value in zip(node.input, inputs, strict=False)
        if name and value is not None
    }
    graph = onnx.helper.make_graph(
        [node],
        "constant",
        [onnx.helper.make_empty_tensor_value_info(name) for name in feeds],
        [onnx.helper.make_empty_tensor_value_info(name) for name in node.output if name],
    )
    try:
        outputs = ReferenceEvaluator(graph, opsets={"": opset}).run(None, feeds)
    except Exception:  # noqa: BLE001 - an op the evaluator cannot run is simply not constant
        return None
    produced = [name for name in node.output if name]
    for name, value in zip(produced, outputs, strict=False):
        if name == wanted:
            array = np.asarray(value)
            return array if array.size <= MAX_CONSTANT_ELEMENTS else None
    return None


# Ops whose meaning changed without onnx's reference evaluator keeping the old form: before
# opset 13 Softmax/LogSoftmax/Hardmax normalise over all axes from ``axis`` on (the input
# flattened to 2-D), from 13 over ``axis`` alone; the evaluator only knows the new meaning.
CHANGED_MEANING = {"Softmax": 13, "LogSoftmax": 13, "Hardmax": 13}


@functools.cache
def evaluable(op_type: str, opset: int) -> bool:
    """Whether onnx's reference evaluator computes ``op_type`` as opset ``opset`` defines it.

    It keeps one class per version where the interface changed (``Unsqueeze_11`` takes
    ``axes`` as an attribute, ``Unsqueeze_13`` as an input) and picks it by opset; where only
    the meaning changed it has the newest form alone (``CHANGED_MEANING``): those are not
    evaluated in older opsets.
    """
    from onnx.reference.ops import load_op

    if opset < CHANGED_MEANING.get(op_type, 0):
        return False
    try:
        load_op("", op_type, opset)
    except Exception:  # noqa: BLE001 - an op the evaluator does not have is not evaluated
        return False
    return True


def quantized_source(view: GraphView, name: str) -> onnx.NodeProto | None:
    """The quantization node ``name`` is computed from (through shape-only ops), if any."""
    seen = 0
    current: GraphView | None = view
    while current is not None and seen < MAX_CONSTANT_DEPTH:
        owner = _owner(current, name)
        if owner is None:
            return None
        node = owner.producer.get(name)
        if node is None:
            return None
        if node.op_type in QUANTIZATION_OPS:
            return node
        if node.op_type not in ("Identity", "Reshape", "Transpose", "Cast", "Unsqueeze", "Squeeze"):
            return None
        name, current, seen = node.input[0], owner, seen + 1
    return None


def describe_not_constant(view: GraphView, name: str) -> str:
    """Why ``name`` is not a constant, in words true of the model."""
    owner = _owner(view, name)
    if owner is not None and name in owner.cache.too_deep:
        return f"is built by a constant recipe deeper than {MAX_CONSTANT_DEPTH} ops (not evaluated)"
    node = owner.producer.get(name) if owner is not None else None
    if node is not None and is_standard(node) and not evaluable(node.op_type, view.opset):
        return (
            f"is computed by {node.op_type}-{view.opset} {node_label(node)}, which bnfold's "
            "evaluator does not implement in that opset (not evaluated)"
        )
    if node is not None and node.op_type in SUBGRAPH_OPS:
        return f"is computed by {node.op_type} {node_label(node)} (not evaluated)"
    return f"is {view.origin(name)}" if owner is not None else "is undefined"


__all__ = [
    "NONDETERMINISTIC_OPS",
    "ConstantCache",
    "constant_node_value",
    "describe_not_constant",
    "dropout_is_inference",
    "evaluable",
    "evaluate_node",
    "quantized_source",
    "standalone_view",
]
