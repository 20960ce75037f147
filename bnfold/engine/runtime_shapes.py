"""Shapes computed at run time: ``Shape → Gather → Unsqueeze → Concat → Reshape``.

tf2onnx writes a Keras ``Flatten`` with a target shape built at run time from the input's
own shape (``[N, -1]`` with ``N`` read by ``Shape`` and ``Gather``). onnx's shape inference
(1.23, with ``data_prop`` too) infers a ``Reshape`` only from a constant target, so it loses
the rank there, and with it every shape after: a Dense → BN after the Flatten could not be
proven per feature, and was neither folded nor (for a ``Mul``/``Add`` chain) reported.

``infer_with_runtime_shapes`` evaluates those shape subgraphs itself: the value of each
small integer tensor as a tuple of dims, each an int, a symbol (``dim_param``, the same
run-time value wherever it appears) or None (unknown), from

- constants (initializers, ``Constant``), and ``Shape`` of a tensor whose shape inference
  knows (``start``/``end`` from opset 15);
- ``Gather`` (axis 0, constant indices), ``Slice`` (constant starts/ends/axes/steps),
  ``Squeeze``/``Unsqueeze`` between a scalar and one element, ``Concat``, ``Cast`` to an
  integer type, ``Identity``; ``Add``/``Sub``/``Mul`` of known numbers.

A ``Reshape`` whose output inference left without a shape and whose target's length is
known gets its output shape from ONNX's rules (``0`` copies the input dim unless
``allowzero``; ``-1`` is what remains of the input's size, known when the input's numbers
and symbols cancel against the target's), written as the tensor's ``value_info`` of the
skeleton; inference then runs again from there, a few rounds for reshapes in a row. Only
the main graph's shape subgraphs are evaluated; a value not derivable stays unknown (never
guessed), so a shape found here is one the model has on every input it runs on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import onnx

Dim = int | str | None
Value = tuple[tuple[Dim, ...], bool]  # (elements, is a scalar)

MAX_ROUNDS = 4  # reshapes in a row, each found once the one before has its shape
_INT_TYPES = frozenset(
    {
        onnx.TensorProto.INT64,
        onnx.TensorProto.INT32,
        onnx.TensorProto.INT16,
        onnx.TensorProto.INT8,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.UINT16,
        onnx.TensorProto.UINT32,
        onnx.TensorProto.UINT64,
    }
)
_MAX_ELEMENTS = 64  # shape tensors are short; anything longer is data, not a shape


def infer_with_runtime_shapes(skeleton: onnx.ModelProto) -> onnx.ModelProto:
    """onnx's inference of ``skeleton``, then again with the output shapes of reshapes whose
    target is computed at run time (see the module doc). Raises what the first inference
    raises; a later round that fails keeps the round before."""
    inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False, data_prop=True)
    model = skeleton
    for _ in range(MAX_ROUNDS):
        found = reshape_shapes(inferred.graph, _opset(skeleton))
        if not found:
            break
        model = _with_value_info(model, found)
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception:  # noqa: BLE001 - keep what the round before inferred
            break
    return inferred


def reshape_shapes(graph: onnx.GraphProto, opset: int) -> list[onnx.ValueInfoProto]:
    """Value infos for the ``Reshape`` outputs of ``graph`` that inference left unknown and
    whose target this module can evaluate."""
    shapes, types = _known(graph)
    values = _constants(graph)
    found: list[onnx.ValueInfoProto] = []
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Reshape" and len(node.input) >= 2 and node.output:
            output = node.output[0]
            target = values.get(node.input[1])
            elem = types.get(node.input[0])
            if output in shapes or target is None or target[1] or not elem:
                continue
            dims = _reshaped(shapes.get(node.input[0]), target[0], _allowzero(node))
            if dims is not None:
                found.append(onnx.helper.make_tensor_value_info(output, elem, list(dims)))
                shapes[output] = dims
            continue
        value = _evaluate(node, values, shapes, opset)
        if value is not None and node.output:
            values[node.output[0]] = value
    return found


def _reshaped(
    data: tuple[Dim, ...] | None, target: Sequence[Dim], allowzero: bool
) -> tuple[Dim, ...] | None:
    """The output shape of ``Reshape(data, target)`` (its rank is the target's length); None
    for a target this module does not follow (two −1, another negative number). A None or
    symbol in ``target`` is a dim ``Shape`` read, never negative (arithmetic on unknowns
    gives no value at all)."""
    dims: list[Dim] = []
    infer_at: int | None = None
    for index, dim in enumerate(target):
        if isinstance(dim, int) and dim == 0 and not allowzero:
            if data is None or index >= len(data):
                return None
            dims.append(data[index])
        elif isinstance(dim, int) and dim == -1:
            if infer_at is not None:
                return None
            infer_at = index
            dims.append(None)
        elif isinstance(dim, int) and dim < 0:
            return None
        elif isinstance(dim, str) and not allowzero:
            # A run-time dim that is 0 copies the input's dim instead: the same symbol
            # either way only where the input has that symbol there.
            same = data is not None and index < len(data) and data[index] == dim
            dims.append(dim if same else None)
        else:
            dims.append(dim)  # a number, a symbol, or None: a dim Shape read (never −1)
    if infer_at is not None:
        dims[infer_at] = _remaining(data, [d for i, d in enumerate(dims) if i != infer_at])
    return tuple(dims)


def _remaining(data: tuple[Dim, ...] | None, others: list[Dim]) -> Dim:
    """``size(data) / product(others)`` where numbers and symbols cancel exactly; else None."""
    if data is None or any(dim is None for dim in data) or any(dim is None for dim in others):
        return None
    symbols = Counter(dim for dim in data if isinstance(dim, str))
    number = int(np.prod([dim for dim in data if isinstance(dim, int)], dtype=np.int64))
    divisor = 1
    for dim in others:
        if isinstance(dim, str):
            if symbols[dim] == 0:
                return None
            symbols[dim] -= 1
        elif isinstance(dim, int):
            divisor *= dim
    if +symbols or divisor == 0 or number % divisor:
        return None
    return number // divisor


def _evaluate(
    node: onnx.NodeProto,
    values: dict[str, Value],
    shapes: dict[str, tuple[Dim, ...]],
    opset: int,
) -> Value | None:
    """The value of ``node``'s first output, where it is a shape computation this module
    follows (see the module doc); else None."""
    op, inputs = node.op_type, list(node.input)
    if op == "Shape" and inputs:
        shape = shapes.get(inputs[0])
        if shape is None:
            return None
        start, end = (_int_attr(node, "start", 0), _int_attr(node, "end", None))
        if opset < 15:
            start, end = 0, None
        return tuple(shape[slice(start, end)]), False
    known = [values.get(name) if name else None for name in inputs]
    if not known or known[0] is None:
        return None
    first, scalar = known[0]
    if op in ("Identity", "Cast"):
        if op == "Cast" and _int_attr(node, "to", 0) not in _INT_TYPES:
            return None
        return first, scalar
    if op == "Gather":
        indices = known[1] if len(known) > 1 else None
        if scalar or indices is None or _int_attr(node, "axis", 0) != 0:
            return None
        picked = [_at(first, index) for index in indices[0]]
        if any(pick is _MISSING for pick in picked):
            return None
        return tuple(picked), indices[1]  # type: ignore[arg-type]
    if op == "Unsqueeze":
        axes = _axes(node, known, opset)
        return ((first, False) if scalar and axes == [0] else None) if axes is not None else None
    if op == "Squeeze":
        axes = _axes(node, known, opset)
        ok = not scalar and len(first) == 1 and axes in (None, [0], [-1])
        return (first, True) if ok else None
    if op == "Concat":
        if _int_attr(node, "axis", 0) not in (0, -1) or any(
            part is None or part[1] for part in known
        ):
            return None
        return tuple(dim for part in known for dim in part[0]), False  # type: ignore[index]
    if op == "Slice":
        return _slice(node, known, opset)
    if op in ("Add", "Sub", "Mul") and len(known) == 2 and known[1] is not None:
        return _arithmetic(op, known[0], known[1])
    return None


_MISSING = object()


def _at(elements: tuple[Dim, ...], index: Dim) -> object:
    if not isinstance(index, int) or not -len(elements) <= index < len(elements):
        return _MISSING
    return elements[index]


def _slice(node: onnx.NodeProto, known: list[Value | None], opset: int) -> Value | None:
    first, scalar = known[0]  # type: ignore[misc]
    if scalar:
        return None
    if opset < 10:
        starts = _ints_attr(node, "starts")
        ends = _ints_attr(node, "ends")
        axes: list[Dim] | None = _ints_attr(node, "axes") or [0]
        steps: list[Dim] | None = [1]
    else:
        parts = [None if part is None else list(part[0]) for part in known[1:]]
        parts += [None] * (4 - len(parts))
        starts, ends, axes, steps = parts[0], parts[1], parts[2] or [0], parts[3] or [1]
        if len(node.input) > 3 and node.input[3] and parts[2] is None:
            return None
        if len(node.input) > 4 and node.input[4] and parts[3] is None:
            return None
    if starts is None or ends is None or steps is None or axes not in ([0], [-1]):
        return None
    bounds = [*starts, *ends, *steps]
    if len(bounds) != 3 or not all(isinstance(v, int) for v in bounds) or bounds[2] == 0:
        return None
    start, end, step = (int(v) for v in bounds)  # type: ignore[arg-type]
    return tuple(first[start:end:step]), False


def _arithmetic(op: str, left: Value, right: Value) -> Value | None:
    (a, a_scalar), (b, b_scalar) = left, right
    if len(a) != len(b) and len(a) != 1 and len(b) != 1:
        return None
    size = max(len(a), len(b))
    a, b = (a * size if len(a) == 1 else a), (b * size if len(b) == 1 else b)
    out: list[Dim] = []
    for x, y in zip(a, b, strict=True):
        if not (isinstance(x, int) and isinstance(y, int)):
            return None  # unknown, maybe negative: no element of it may stand for a dim
        out.append(x + y if op == "Add" else x - y if op == "Sub" else x * y)
    return tuple(out), a_scalar and b_scalar


def _axes(node: onnx.NodeProto, known: list[Value | None], opset: int) -> list[Dim] | None:
    if opset < 13:
        return _ints_attr(node, "axes")
    if len(known) < 2 or known[1] is None:
        return None
    return list(known[1][0])


def _allowzero(node: onnx.NodeProto) -> bool:
    return bool(_int_attr(node, "allowzero", 0))


def _int_attr(node: onnx.NodeProto, name: str, default: int | None) -> int | None:
    for attr in node.attribute:
        if attr.name == name and attr.type == onnx.AttributeProto.INT:
            return int(attr.i)
    return default


def _ints_attr(node: onnx.NodeProto, name: str) -> list[Dim] | None:
    for attr in node.attribute:
        if attr.name == name and attr.type == onnx.AttributeProto.INTS:
            return [int(v) for v in attr.ints]
    return None


def _known(
    graph: onnx.GraphProto,
) -> tuple[dict[str, tuple[Dim, ...]], dict[str, int]]:
    """Shapes (where inference found one) and element types of the graph's tensors."""
    shapes: dict[str, tuple[Dim, ...]] = {}
    types: dict[str, int] = {}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if not value.type.HasField("tensor_type"):
            continue
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type:
            types.setdefault(value.name, int(tensor_type.elem_type))
        if tensor_type.HasField("shape"):
            shapes.setdefault(value.name, tuple(_dims(tensor_type.shape.dim)))
    for tensor in graph.initializer:
        shapes.setdefault(tensor.name, tuple(int(d) for d in tensor.dims))
        types.setdefault(tensor.name, int(tensor.data_type))
    return shapes, types


def _dims(dims: Iterable[onnx.TensorShapeProto.Dimension]) -> Iterable[Dim]:
    for dim in dims:
        if dim.HasField("dim_value"):
            yield int(dim.dim_value)
        elif dim.HasField("dim_param"):
            yield dim.dim_param
        else:
            yield None


def _constants(graph: onnx.GraphProto) -> dict[str, Value]:
    """Small integer constants (initializers that are no graph input, ``Constant`` nodes)."""
    inputs = {value.name for value in graph.input}
    values: dict[str, Value] = {}
    tensors = [(t.name, t) for t in graph.initializer if t.name not in inputs]
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    tensors.append((node.output[0], attr.t))
                elif attr.name == "value_ints":
                    values[node.output[0]] = (tuple(int(v) for v in attr.ints), False)
                elif attr.name == "value_int":
                    values[node.output[0]] = ((int(attr.i),), True)
    for name, tensor in tensors:
        if tensor.data_type not in _INT_TYPES or len(tensor.dims) > 1 or tensor.external_data:
            continue
        if tensor.dims and tensor.dims[0] > _MAX_ELEMENTS:
            continue
        try:
            array = onnx.numpy_helper.to_array(tensor)
        except Exception:  # noqa: BLE001 - an unreadable constant is just not known
            continue
        values[name] = (tuple(int(v) for v in array.reshape(-1)), array.ndim == 0)
    return values


def _opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def _with_value_info(model: onnx.ModelProto, found: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
    """A copy of ``model`` whose main graph declares ``found`` (replacing shapeless entries)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    declared = {value.name: value for value in copy.graph.value_info}
    for value in found:
        if value.name in declared:
            declared[value.name].type.CopyFrom(value.type)
        else:
            copy.graph.value_info.append(value)
    return copy
