"""Read-only helpers over one ONNX graph: producers, consumers, constant values, shapes.

A ``GraphView`` is built once per pass over a graph and rebuilt after each edit (graphs are
small compared to their tensors; rebuilding is cheap and keeps the index trivially right).
Constant values are cached across rebuilds by the ``ConstantCache`` the driver owns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .lazyio import tensor_array

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
# Ops that carry subgraphs are never evaluated as constants (the evaluator would need scopes).
SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})
# A constant subgraph deeper than this is left alone: bnfold evaluates parameter recipes
# (ConstantOfShape, Cast, Expand, Reshape of constants...), not whole networks.
MAX_CONSTANT_DEPTH = 8
# Do not materialise constant subgraph results larger than this (elements).
MAX_CONSTANT_ELEMENTS = 1 << 28


def opset_version(model: onnx.ModelProto, domain: str = "") -> int:
    """The opset version ``model`` imports for ``domain`` ('' and 'ai.onnx' are the same)."""
    aliases = {"", "ai.onnx"} if domain in ("", "ai.onnx") else {domain}
    for entry in model.opset_import:
        if entry.domain in aliases:
            return int(entry.version)
    return 0


def attribute(node: onnx.NodeProto, name: str, default: object = None) -> object:
    """The value of ``node``'s attribute ``name``, or ``default`` when it is absent."""
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def node_label(node: onnx.NodeProto) -> str:
    """A node's name, or ``<OpType:first-output>`` for unnamed nodes (reports, messages)."""
    return node.name or f"<{node.op_type}:{node.output[0] if node.output else ''}>"


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


def names_used_inside(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads, at any depth; outer-scope captures are among them.

    Over-approximates (a name defined inside and also outside counts as used): a capture
    is a consumer we must not break, and a false positive only costs a refused fold.
    """
    used: set[str] = set()
    for node in graph.node:
        used.update(name for name in node.input if name)
        for sub in subgraphs(node):
            used |= names_used_inside(sub)
    used.update(out.name for out in graph.output)
    return used


# Larger values are read (or evaluated) again each time rather than kept: a fold reads
# each weight once or twice, and caching every weight would double a model's memory.
CACHE_LIMIT_BYTES = 1 << 20


@dataclass
class ConstantCache:
    """Values of constant tensors by name; the driver drops entries it overwrites.

    ``base_dir`` is where external tensor bytes live (the model's folder).
    """

    values: dict[str, np.ndarray] = field(default_factory=dict)
    base_dir: Path | None = None
    # Element types and shapes of run-time tensors (shape inference), for the ops that read
    # only the type (CastLike) or the shape (Shape) of a run-time input.
    elem_types: Callable[[], dict[str, int]] | None = None
    shapes: Callable[[], dict[str, tuple[int | str | None, ...]]] | None = None

    def forget(self, names: Iterable[str]) -> None:
        for name in names:
            self.values.pop(name, None)


class GraphView:
    """An index over ``graph``: who produces and who consumes each tensor name.

    ``outer`` is the view of the enclosing graph, for subgraph bodies that capture
    outer-scope constants.
    """

    def __init__(
        self,
        graph: onnx.GraphProto,
        *,
        ir_version: int,
        cache: ConstantCache | None = None,
        outer: GraphView | None = None,
    ) -> None:
        self.graph = graph
        self.ir_version = ir_version
        self.cache = cache if cache is not None else ConstantCache()
        self.outer = outer
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.graph_inputs = {value.name for value in graph.input}
        self.graph_outputs = {value.name for value in graph.output}
        for node in graph.node:
            for name in node.output:
                if name:
                    self.producer[name] = node
            seen: set[str] = set()
            for name in node.input:
                if name and name not in seen:
                    seen.add(name)
                    self.consumers.setdefault(name, []).append(node)
            for sub in subgraphs(node):
                for name in names_used_inside(sub) - seen:
                    seen.add(name)
                    self.consumers.setdefault(name, []).append(node)

    # ---- structure ---------------------------------------------------------------------
    def consumer_count(self, name: str) -> int:
        return len(self.consumers.get(name, ()))

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        """The single node reading ``name``, or None when zero or several do."""
        readers = self.consumers.get(name, ())
        return readers[0] if len(readers) == 1 else None

    def is_graph_output(self, name: str) -> bool:
        return name in self.graph_outputs

    def is_private(self, name: str, reader: onnx.NodeProto) -> bool:
        """``name`` is read by ``reader`` alone and is not a graph output."""
        return self.only_consumer(name) is reader and not self.is_graph_output(name)

    def is_overridable(self, name: str) -> bool:
        """An initializer that is also a graph input can be replaced at run time.

        From IR version 4 on, initializers need not be inputs, so one that is listed as an
        input is a default value the user may override. Below IR 4 the spec required every
        initializer to be listed as an input, and they are constants.
        """
        if name in self.graph_inputs and name in self.initializers:
            return self.ir_version >= 4
        if name in self.graph_inputs:
            return True
        if name not in self.initializers and name not in self.producer and self.outer is not None:
            return self.outer.is_overridable(name)
        return False

    # ---- constants ---------------------------------------------------------------------
    def constant_value(self, name: str) -> np.ndarray | None:
        """The value of ``name`` when it is a constant, else None.

        Constants are initializers that cannot be overridden, ``Constant`` nodes, and small
        deterministic subgraphs of standard ops over constants (``ConstantOfShape``, ``Cast``,
        ``Expand``...) that exporters use to build parameters; those are evaluated with
        onnx's reference evaluator.
        """
        return self._constant(name, depth=0)

    def _constant(self, name: str, depth: int) -> np.ndarray | None:
        if not name:
            return None
        if name in self.cache.values:
            return self.cache.values[name]
        value = self._compute_constant(name, depth)
        if value is not None and value.nbytes <= CACHE_LIMIT_BYTES:
            self.cache.values[name] = value
        return value

    def _compute_constant(self, name: str, depth: int) -> np.ndarray | None:
        if name in self.initializers:
            if self.is_overridable(name):
                return None
            return tensor_array(self.initializers[name], self.cache.base_dir)
        node = self.producer.get(name)
        if node is None:
            if name in self.graph_inputs or self.outer is None:
                return None
            return self.outer._constant(name, depth)
        if depth >= MAX_CONSTANT_DEPTH or node.domain not in ("", "ai.onnx"):
            return None
        if node.op_type in NONDETERMINISTIC_OPS or node.op_type in SUBGRAPH_OPS:
            return None
        if node.op_type == "Constant":
            return _constant_node_value(node)
        if node.op_type == "CastLike":
            return self._cast_like(node, depth)
        if node.op_type == "Shape" and self._constant(node.input[0], depth + 1) is None:
            return self._static_shape(node)
        inputs: list[np.ndarray | None] = []
        for input_name in node.input:
            if not input_name:
                inputs.append(None)
                continue
            value = self._constant(input_name, depth + 1)
            if value is None:
                return None
            inputs.append(value)
        return _evaluate_node(node, inputs, name)

    def _cast_like(self, node: onnx.NodeProto, depth: int) -> np.ndarray | None:
        """CastLike reads only the *type* of its second input, which may be a run-time tensor
        (torch's dynamo exporter casts a Conv's zero bias like the graph input)."""
        value = self._constant(node.input[0], depth + 1)
        if value is None:
            return None
        target = self._elem_type(node.input[1])
        if target is None:
            return None
        return value.astype(onnx.helper.tensor_dtype_to_np_dtype(target))

    def _static_shape(self, node: onnx.NodeProto) -> np.ndarray | None:
        """``Shape`` of a run-time tensor whose requested dims shape inference proved static
        (torch's dynamo exporter sizes a BN's default γ/β by ``Shape(x)[1:2]``)."""
        if self.cache.shapes is None:
            return None
        shape = self.cache.shapes().get(node.input[0])
        if shape is None:
            return None
        rank = len(shape)
        start = int_attribute(node, "start", 0)
        end = int_attribute(node, "end", rank)
        start, end = (max(0, min(rank, i + rank if i < 0 else i)) for i in (start, end))
        dims = shape[start:end]
        if not all(isinstance(d, int) for d in dims):
            return None
        return np.array(dims, dtype=np.int64)

    def _elem_type(self, name: str) -> int | None:
        for value in [*self.graph.input, *self.graph.value_info, *self.graph.output]:
            if value.name == name and value.type.tensor_type.elem_type:
                return int(value.type.tensor_type.elem_type)
        if name in self.initializers:
            return int(self.initializers[name].data_type)
        if self.cache.elem_types is not None:
            found = self.cache.elem_types().get(name)
            if found:
                return found
        return self.outer._elem_type(name) if self.outer is not None else None


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.array(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.array(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.array(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
    return None  # sparse and string constants are never BN parameters or weights


def _evaluate_node(
    node: onnx.NodeProto, inputs: list[np.ndarray | None], wanted: str
) -> np.ndarray | None:
    """Evaluate one standard node on constant inputs with onnx's reference implementation."""
    from onnx.reference import ReferenceEvaluator

    feeds = {
        name: value
        for name, value in zip(node.input, inputs, strict=False)
        if name and value is not None
    }
    try:
        outputs = ReferenceEvaluator(node).run(None, feeds)
    except Exception:  # noqa: BLE001 - an op the evaluator cannot run is simply not constant
        return None
    for name, value in zip(node.output, outputs, strict=False):
        if name == wanted:
            array = np.asarray(value)
            return array if array.size <= MAX_CONSTANT_ELEMENTS else None
    return None


def tensor_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | str | None, ...]]:
    """Static or symbolic shape of every tensor onnx's shape inference can tell."""
    return infer_tensors(model)[0]


def infer_tensors(
    model: onnx.ModelProto,
) -> tuple[dict[str, tuple[int | str | None, ...]], dict[str, int]]:
    """Shapes and element types of every tensor onnx's shape inference can tell.

    Inference runs on a skeleton of the model in which large initializers are replaced by
    graph inputs of the same type, so no tensor bytes are copied (shape inference only needs
    their shapes; small constants such as Reshape targets keep their values).
    """
    skeleton = _shape_skeleton(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - a model onnx cannot infer just gives no shapes
        inferred = skeleton
    shapes: dict[str, tuple[int | str | None, ...]] = {}
    types: dict[str, int] = {}

    def collect(graph: onnx.GraphProto) -> None:
        for value in [*graph.input, *graph.output, *graph.value_info]:
            shape = _value_shape(value)
            if shape is not None:
                shapes.setdefault(value.name, shape)
            if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
                types.setdefault(value.name, int(value.type.tensor_type.elem_type))
        for tensor in graph.initializer:
            shapes.setdefault(tensor.name, tuple(int(d) for d in tensor.dims))
            types.setdefault(tensor.name, int(tensor.data_type))
        for node in graph.node:
            for sub in subgraphs(node):
                collect(sub)

    collect(inferred.graph)
    return shapes, types


def _value_shape(value: onnx.ValueInfoProto) -> tuple[int | str | None, ...] | None:
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


SKELETON_LIMIT_BYTES = 4096


def _shape_skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    graph = skeleton.graph
    source = model.graph
    graph.name = source.name
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    declared = {value.name for value in source.input}
    for tensor in source.initializer:
        if _tensor_nbytes(tensor) <= SKELETON_LIMIT_BYTES:
            graph.initializer.append(tensor)
        elif tensor.name not in declared:
            graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    return skeleton


def _tensor_nbytes(tensor: onnx.TensorProto) -> int:
    count = int(np.prod(tensor.dims)) if tensor.dims else 1
    return count * 8  # an upper bound is all we need
