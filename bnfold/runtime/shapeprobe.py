"""onnx shape inference on a copy of the model whose inputs have trial sizes.

The dims rules (``dims.py``, ``builtfor.py``) ask the same question at many sizes: "with the
inputs this large, what shape does each tensor get?" Each probe copies the model with the
inputs' declared shapes replaced by concrete ones and the stored ``value_info`` dropped (it
may hold shapes for the old sizes), then runs onnx's inference with data propagation, so a
``Reshape`` whose target is computed from ``Shape`` (``x.view(x.size(0), -1)``) is followed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx
from google.protobuf.message import Message

# A tensor's inferred dims: ints where known, None where inference left a dim unknown.
Dims = tuple[int | None, ...]
# Initializers up to this many bytes keep their values in ``weightless``: shape tensors
# (a Reshape's target) are read by inference, weights are not.
KEPT_VALUE_BYTES = 1 << 12


def weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose main-graph initializers above ``KEPT_VALUE_BYTES`` keep their
    name, type and dims but not their values: what many probes copy (a 500 MB model held in
    memory would otherwise be copied at every size tried)."""
    skeleton = onnx.ModelProto()
    _copy_fields(model, skeleton, skip="graph")
    _copy_fields(model.graph, skeleton.graph, skip="initializer")
    for tensor in model.graph.initializer:
        if tensor.ByteSize() <= KEPT_VALUE_BYTES:
            skeleton.graph.initializer.add().CopyFrom(tensor)
        else:
            skeleton.graph.initializer.add(
                name=tensor.name, data_type=tensor.data_type, dims=tensor.dims
            )
    return skeleton


def _copy_fields(source: Message, target: Message, *, skip: str) -> None:
    """Copy every set field of ``source`` into ``target`` but the one named ``skip``."""
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        if isinstance(value, Message):
            getattr(target, field.name).CopyFrom(value)
        elif hasattr(value, "extend") and not isinstance(value, (str, bytes)):
            getattr(target, field.name).extend(value)  # a repeated field
        else:
            setattr(target, field.name, value)


def sized_copy(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs named in ``shapes`` have those concrete shapes."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for value in probe.graph.input:
        if value.name in shapes:
            target = value.type.tensor_type.shape
            target.ClearField("dim")
            for dim in shapes[value.name]:
                target.dim.add().dim_value = int(dim)
    del probe.graph.value_info[:]
    return probe


def infer(model: onnx.ModelProto, *, strict: bool) -> dict[str, Dims] | None:
    """``{tensor: dims}`` for every tensor inference reached; None when it failed outright.

    ``strict=False`` keeps going past a node it cannot infer (its outputs stay unknown).
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=strict, data_prop=True)
    except Exception:  # noqa: BLE001 - any inference failure means "not at these sizes"
        return None
    graph = inferred.graph
    dims: dict[str, Dims] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = value.type.tensor_type
        if value.type.HasField("tensor_type") and tensor_type.HasField("shape"):
            dims[value.name] = tuple(
                int(d.dim_value) if d.HasField("dim_value") else None for d in tensor_type.shape.dim
            )
    return dims


def all_positive(dims: Mapping[str, Dims]) -> bool:
    """No inferred dim is zero or negative: every op got a non-empty input."""
    return all(d is None or d > 0 for shape in dims.values() for d in shape)
