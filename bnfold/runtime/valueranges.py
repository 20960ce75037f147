"""Value ranges for integer inputs: gather indices that are valid, or a stated default.

An integer input used as the indices of a ``Gather``/``GatherElements`` (directly or through
Cast/Reshape/Squeeze/Unsqueeze/Flatten/Identity/Transpose) is drawn from ``[0, n)`` where ``n``
is the data's size on the gather axis, when that size is known, so every index is valid.
Other integers are drawn from ``DEFAULT_INT_RANGE`` unless ``--range`` says otherwise.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..errors import UsageError
from .specs import InputSpec, declared_shape

DEFAULT_INT_RANGE: tuple[int, int] = (0, 10)

# Ops that pass integer values through unchanged, so indices keep their meaning.
_INDEX_PRESERVING_OPS = {
    "Cast",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Identity",
    "Transpose",
}
_GATHER_OPS = {"Gather", "GatherElements"}


def assign_ranges(
    model: onnx.ModelProto, specs: list[InputSpec], ranges: dict[str, tuple[float, float]]
) -> list[str]:
    """Set ``low``/``high`` on every spec that needs one; return notes for the defaults used."""
    notes: list[str] = []
    index_ranges = gather_index_ranges(model, specs)
    for spec in specs:
        if spec.name in ranges:
            low, high = ranges[spec.name]
            if not high > low:
                raise UsageError(
                    f"empty value range [{low:g}, {high:g}) for input {spec.name!r}",
                    hint="need LO < HI",
                )
            spec.low, spec.high, spec.range_source = float(low), float(high), "--range"
        elif spec.dtype.kind in "iu":
            if spec.name in index_ranges:
                size, where = index_ranges[spec.name]
                spec.low, spec.high = 0.0, float(size)
                spec.range_source = f"gather indices ({where})"
                notes.append(f"input {spec.name!r} indexes {where}: values drawn from [0, {size})")
            else:
                spec.low, spec.high = float(DEFAULT_INT_RANGE[0]), float(DEFAULT_INT_RANGE[1])
                notes.append(
                    f"integer input {spec.name!r} drawn from [{DEFAULT_INT_RANGE[0]}, {DEFAULT_INT_RANGE[1]})"
                    " (default; set --range NAME=LO:HI or pass --inputs)"
                )
        if spec.dtype.kind in "iu" and spec.low is not None and spec.high is not None:
            check_integer_range(spec)
    return notes


def check_integer_range(spec: InputSpec) -> None:
    """``UsageError`` unless ``[low, high)`` is non-empty and fits the integer dtype."""
    assert spec.low is not None and spec.high is not None
    if spec.high <= spec.low:
        raise UsageError(f"empty value range [{spec.low:g}, {spec.high:g}) for input {spec.name!r}")
    info = np.iinfo(spec.dtype)
    if spec.low < info.min or spec.high - 1 > info.max:
        raise UsageError(
            f"range [{spec.low:g}, {spec.high:g}) does not fit input {spec.name!r} of type {spec.dtype.name}",
            hint=f"use values within [{info.min}, {info.max}] (--range {spec.name}=LO:HI)",
        )


def _constant_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    shapes[node.output[0]] = tuple(int(d) for d in attr.t.dims)
    return shapes


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | str | None, ...]]:
    """Shapes of intermediate values from onnx shape inference (best effort, never raises)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - shape inference is only a hint here
        return {}
    result = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        shape = declared_shape(vi)
        if shape is not None:
            result[vi.name] = shape
    return result


def gather_index_ranges(
    model: onnx.ModelProto, specs: list[InputSpec]
) -> dict[str, tuple[int, str]]:
    """For integer inputs used as gather indices: (axis size of the data, description)."""
    integer_inputs = {s.name for s in specs if s.dtype.kind in "iu"}
    if not integer_inputs:
        return {}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    known_shapes: dict[str, tuple[int | str | None, ...]] = {s.name: s.shape for s in specs}
    known_shapes.update(_constant_shapes(model))
    inferred: dict[str, tuple[int | str | None, ...]] | None = None

    result: dict[str, tuple[int, str]] = {}
    for name in sorted(integer_inputs):
        frontier, seen = [name], {name}
        while frontier:
            value = frontier.pop()
            for node in consumers.get(value, []):
                if node.op_type in _INDEX_PRESERVING_OPS and node.input[0] == value:
                    for out in node.output:
                        if out and out not in seen:
                            seen.add(out)
                            frontier.append(out)
                elif node.op_type in _GATHER_OPS and len(node.input) > 1 and node.input[1] == value:
                    data = node.input[0]
                    axis = next((int(a.i) for a in node.attribute if a.name == "axis"), 0)
                    shape = known_shapes.get(data)
                    if shape is None:
                        if inferred is None:
                            inferred = _inferred_shapes(model)
                        shape = inferred.get(data)
                    if not shape or not -len(shape) <= axis < len(shape):
                        continue
                    size = shape[axis]
                    if not isinstance(size, int) or size <= 0:
                        continue
                    where = f"{node.op_type} {node.name or data!r} axis {axis} of size {size}"
                    if name not in result or size < result[name][0]:
                        result[name] = (size, where)
    return result
