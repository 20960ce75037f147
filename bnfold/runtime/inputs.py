"""Input sets for verification: specs from the model's graph inputs, generated or loaded data.

Rules (each default used is returned as a note so the report can state it):

- The inputs are the graph inputs that are not initializers, matched by name (``specs.py``).
- Shapes: ``--shape``, ``--dim``, the declared size, ``--default-dim``, else a size derived
  from the graph (``dims.py``, docs/inputs.md): the batch 1, other dims the size the layers
  were built for, else 224 for an image, else a size every Conv/pool accepts, else 1.
  ``dim_value <= 0`` is a symbolic dim. One ``ShapeNote`` per input says what was chosen.
- Values: floats ``N(0, 1)`` or ``--range``; integers ``[0, 10)`` or the valid index range of
  the Gather they feed (``valueranges.py``); generation in ``generate.py``.
- Real data: ``.npz`` files (``npz.py``). The CLI strings are parsed in ``bnfold.commands.parsing``.

Input generation never raises anything but ``UsageError`` (exit 2, naming the option to set)
on a model onnxruntime can load.
"""

from __future__ import annotations

import onnx

from ..errors import UsageError
from .dims import ShapeNote, resolve_shapes
from .generate import generate_inputs
from .npz import check_inputs, describe_inputs, load_inputs, save_inputs
from .specs import InputSpec, declared_shape, graph_inputs, is_floating, numpy_dtype
from .valueranges import DEFAULT_INT_RANGE, assign_ranges


def input_specs(
    model: onnx.ModelProto,
    *,
    shapes: dict[str, tuple[int, ...]] | None = None,
    dims: dict[str, int] | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
    default_dim: int | None = None,
) -> tuple[list[InputSpec], list[str]]:
    """Specs for every fed graph input, and notes stating each default that was used.

    ``default_dim=None`` derives the free dims from the graph (``dims.py``); an int sets
    them all. The notes include one ``ShapeNote`` per input with a chosen dim. Raises ``UsageError`` when an option names an input or symbol the model does
    not have, when ``--shape`` contradicts a static dim, or when an input is not a supported
    tensor.
    """
    shapes, dims, ranges = dict(shapes or {}), dict(dims or {}), dict(ranges or {})
    inputs = graph_inputs(model)
    names = [vi.name for vi in inputs]
    for option, given in (("--shape", shapes), ("--range", ranges)):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise UsageError(
                f"{option} names no graph input: {', '.join(unknown)}",
                hint=f"the model's inputs are: {', '.join(names) or '(none)'}",
            )
    symbols = {d for vi in inputs for d in (declared_shape(vi) or ()) if isinstance(d, str)}
    unknown_dims = sorted(set(dims) - symbols)
    if unknown_dims:
        raise UsageError(
            f"--dim names no symbolic dimension: {', '.join(unknown_dims)}",
            hint=f"the model's symbolic dims are: {', '.join(sorted(symbols)) or '(none)'}",
        )
    for vi in inputs:
        if not vi.type.HasField("tensor_type"):
            kind = vi.type.WhichOneof("value") or "unknown"
            raise UsageError(
                f"input {vi.name!r} is a {kind.replace('_type', '')}, not a tensor; verify feeds tensors only"
            )
    dtypes = {vi.name: numpy_dtype(vi.type.tensor_type.elem_type, vi.name) for vi in inputs}
    resolved, notes = resolve_shapes(model, inputs, shapes, dims, default_dim)
    specs = [
        InputSpec(vi.name, dtypes[vi.name], resolved[vi.name], None, None, declared_shape(vi))
        for vi in inputs
    ]
    notes += assign_ranges(model, specs, ranges)
    return specs, notes


__all__ = [
    "DEFAULT_INT_RANGE",
    "InputSpec",
    "ShapeNote",
    "check_inputs",
    "declared_shape",
    "describe_inputs",
    "generate_inputs",
    "graph_inputs",
    "input_specs",
    "is_floating",
    "load_inputs",
    "save_inputs",
]
