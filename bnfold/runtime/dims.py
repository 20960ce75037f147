"""Concrete shapes for the graph inputs: options first, then sizes derived from the graph.

Per dim, in order: ``--shape name=AxBxC`` (whole shape), ``--dim symbol=N`` (by symbolic dim
name), the declared static size, ``--default-dim N`` when given, else a size chosen here.

Chosen sizes (no ``--default-dim``): axis 0 (the batch) is 1. The other free dims are 1 too,
unless the graph has spatial ops (Conv, ConvTranspose, pooling): those need an input at least
as large as their receptive field, which depends on every kernel, stride, dilation and pad on
the way. Rather than re-derive each op's arithmetic, the free dims are set together to each
size of ``SIZE_LADDER`` in turn and onnx's strict shape inference is run: ``n_min`` is the
first size at which inference succeeds with every inferred dim positive (every op gets a
non-empty input), and the chosen size is the first ladder size ``>= 2*n_min`` that passes too,
so the deepest layer sees more than one position (border and interior). When no ladder size
passes, the free dims stay 1 and a note says which option sets them.
"""

from __future__ import annotations

import onnx

from ..errors import UsageError
from .specs import declared_shape, fmt_declared, fmt_shape

# Sizes tried for spatial dims: powers of two (divisible by every stride product) and the
# input sizes common vision models are exported for (a Flatten->Gemm fixes the size).
SIZE_LADDER: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 224, 256, 299, 320, 384, 512, 640)
SPATIAL_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "ConvInteger",
        "QLinearConv",
        "DeformConv",
        "MaxPool",
        "AveragePool",
        "LpPool",
        "MaxRoiPool",
    }
)
# A generated input larger than this is a usage error, not a MemoryError later.
MAX_INPUT_ELEMENTS = 1 << 28

# A free dim: (input name, axis, symbol or None for an unnamed/unknown dim).
FreeDim = tuple[str, int, str | None]


def resolve_shapes(
    model: onnx.ModelProto,
    inputs: list[onnx.ValueInfoProto],
    shapes: dict[str, tuple[int, ...]],
    dims: dict[str, int],
    default_dim: int | None,
) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """``{input: concrete shape}`` and notes stating each size that was not given."""
    resolved: dict[str, list[int]] = {}
    free: list[FreeDim] = []
    for vi in inputs:
        declared = declared_shape(vi)
        if vi.name in shapes:
            resolved[vi.name] = list(_checked_shape(vi.name, declared, shapes[vi.name]))
            continue
        if declared is None:
            raise UsageError(
                f"input {vi.name!r} has no declared shape (not even its rank)",
                hint=f"pass --shape {vi.name}=AxBxC or --inputs FILE.npz",
            )
        shape: list[int] = []
        for axis, dim in enumerate(declared):
            if isinstance(dim, int):
                shape.append(dim)
            elif isinstance(dim, str) and dim in dims:
                shape.append(int(dims[dim]))
            else:
                shape.append(0)
                free.append((vi.name, axis, dim))
        resolved[vi.name] = shape

    notes: list[str] = []
    if free:
        sizes, notes = _choose(model, inputs, resolved, free, default_dim)
        for (name, axis, _), size in zip(free, sizes, strict=True):
            resolved[name][axis] = size
    result = {name: tuple(shape) for name, shape in resolved.items()}
    for name, final in result.items():
        _check_size(name, final)
    return result, notes


def _checked_shape(
    name: str, declared: tuple[int | str | None, ...] | None, shape: tuple[int, ...]
) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if declared is not None:
        if len(declared) != len(shape):
            raise UsageError(
                f"--shape {name}={fmt_shape(shape)} has rank {len(shape)}, the model declares rank {len(declared)}",
                hint=f"declared shape: {fmt_declared(declared)}",
            )
        for axis, (want, got) in enumerate(zip(declared, shape, strict=True)):
            if isinstance(want, int) and want != got:
                raise UsageError(
                    f"--shape {name}={fmt_shape(shape)} sets dim {axis} to {got}, the model fixes it at {want}",
                    hint=f"declared shape: {fmt_declared(declared)}",
                )
    return shape


def _check_size(name: str, shape: tuple[int, ...]) -> None:
    count = 1
    for dim in shape:
        count *= dim
    if count > MAX_INPUT_ELEMENTS:
        raise UsageError(
            f"input {name!r} would have shape {fmt_shape(shape)} ({count:,} elements), too large to generate",
            hint=f"set smaller sizes with --shape {name}=... or --dim NAME=N",
        )


def _label(free: FreeDim) -> str:
    name, axis, symbol = free
    return symbol if symbol is not None else f"{name}[{axis}]"


def _choose(
    model: onnx.ModelProto,
    inputs: list[onnx.ValueInfoProto],
    resolved: dict[str, list[int]],
    free: list[FreeDim],
    default_dim: int | None,
) -> tuple[list[int], list[str]]:
    labels = list(dict.fromkeys(_label(f) for f in free))
    if default_dim is not None:
        sizes = [default_dim] * len(free)
        return sizes, [_note(labels, default_dim, "--default-dim")]
    batch = [f for f in free if f[1] == 0]
    others = [f for f in free if f[1] != 0 and _label(f) not in {_label(b) for b in batch}]
    chosen: dict[str, int] = {_label(f): 1 for f in free}
    notes: list[str] = []
    batch_labels = list(dict.fromkeys(_label(f) for f in batch))
    if batch_labels:
        notes.append(_note(batch_labels, 1, "batch"))
    other_labels = list(dict.fromkeys(_label(f) for f in others))
    if other_labels:
        if any(node.op_type in SPATIAL_OPS for node in model.graph.node):
            size, why = _spatial_size(model, inputs, resolved, free, set(other_labels))
            notes.append(_note(other_labels, size, why))
            chosen.update(dict.fromkeys(other_labels, size))
        else:
            notes.append(_note(other_labels, 1, "no spatial op reads them"))
    return [chosen[_label(f)] for f in free], notes


def _note(labels: list[str], size: int, why: str) -> str:
    return (
        f"symbolic dims {', '.join(labels)} set to {size} ({why}; override with --dim NAME=N,"
        " --shape INPUT=AxBxC or --default-dim N)"
    )


def _spatial_size(
    model: onnx.ModelProto,
    inputs: list[onnx.ValueInfoProto],
    resolved: dict[str, list[int]],
    free: list[FreeDim],
    labels: set[str],
) -> tuple[int, str]:
    """Smallest ladder size >= 2x the first size every op accepts (see module docstring)."""
    smallest: int | None = None
    for size in SIZE_LADDER:
        if smallest is not None and size < 2 * smallest:
            continue
        trial = {f: (size if _label(f) in labels else 1) for f in free}
        if _shapes_work(model, inputs, resolved, trial):
            if smallest is not None:
                return size, f"every Conv/pool accepts {smallest}; doubled"
            smallest = size
    if smallest is not None:
        return smallest, "the smallest size every Conv/pool accepts"
    return 1, "no size up to 640 passes shape inference"


def _shapes_work(
    model: onnx.ModelProto,
    inputs: list[onnx.ValueInfoProto],
    resolved: dict[str, list[int]],
    trial: dict[FreeDim, int],
) -> bool:
    """onnx strict shape inference succeeds and every inferred dim is positive."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    by_name = {vi.name: vi for vi in probe.graph.input}
    for vi in inputs:
        shape = list(resolved[vi.name])
        for (name, axis, _), size in trial.items():
            if name == vi.name:
                shape[axis] = size
        target = by_name[vi.name].type.tensor_type.shape
        target.ClearField("dim")
        for dim in shape:
            target.dim.add().dim_value = dim
    del probe.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, strict_mode=True)
    except Exception:  # noqa: BLE001 - any inference failure means "this size does not work"
        return False
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            for dim in vi.type.tensor_type.shape.dim:
                if dim.HasField("dim_value") and dim.dim_value <= 0:
                    return False
    return True
