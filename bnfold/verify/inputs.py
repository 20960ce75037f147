"""Input sets for verification: specs from the model's graph inputs, generated or loaded data.

Rules (each default used is returned as a note so the report can state it):

- The inputs are the graph inputs that are not initializers, matched by name.
- A dimension comes from ``--shape name=AxBxC`` (whole shape), else ``--dim symbol=N`` (by
  symbolic dim name), else the declared static size, else ``default_dim`` (1).
- Floating inputs are standard-normal ``N(0, 1)``; with ``--range name=lo:hi`` uniform in
  ``[lo, hi)``. Integers are uniform in ``[lo, hi)`` (default ``[0, 10)``), booleans fair coins;
  a generated integer or boolean tensor is never all zeros/False (one element is set), because
  an all-zero input hides bugs that any non-trivial value would show.
- An integer input used as the indices of a ``Gather``/``GatherElements`` (directly or through
  Cast/Reshape/Squeeze/Unsqueeze/Flatten/Identity) is drawn from ``[0, n)`` where ``n`` is the
  data's size on the gather axis, when that size is known, so every index is valid.
- Each input gets its own random stream seeded by ``(seed, crc32(name))``: adding an input to
  a model does not change the data generated for the others.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..errors import UsageError

DEFAULT_INT_RANGE: tuple[int, int] = (0, 10)

# Element types verify can feed through onnxruntime's Python API.
SUPPORTED_TYPES: frozenset[int] = frozenset(
    {
        TensorProto.FLOAT,
        TensorProto.DOUBLE,
        TensorProto.FLOAT16,
        TensorProto.BFLOAT16,
        TensorProto.INT8,
        TensorProto.INT16,
        TensorProto.INT32,
        TensorProto.INT64,
        TensorProto.UINT8,
        TensorProto.UINT16,
        TensorProto.UINT32,
        TensorProto.UINT64,
        TensorProto.BOOL,
        TensorProto.STRING,
    }
)

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
_WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")


@dataclass
class InputSpec:
    """What to feed one graph input: dtype, concrete shape, and the value range used.

    ``low``/``high`` is the half-open range ``[low, high)``; None for floats means N(0, 1).
    ``declared_shape`` is the model's declaration (ints, symbol names, or None for unknown).
    """

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    low: float | None
    high: float | None
    declared_shape: tuple[int | str | None, ...] | None = None
    range_source: str = "default"


def _elem_type_name(elem_type: int) -> str:
    try:
        return str(TensorProto.DataType.Name(elem_type)).lower()
    except ValueError:
        return f"type {elem_type}"


def _numpy_dtype(elem_type: int, name: str) -> np.dtype:
    if elem_type not in SUPPORTED_TYPES:
        raise UsageError(
            f"input {name!r} has element type {_elem_type_name(elem_type)}, which verify cannot feed",
            hint="supported: float16/32/64, bfloat16, int8-64, uint8-64, bool, string",
        )
    if elem_type == TensorProto.STRING:
        return np.dtype(np.str_)
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def is_floating(dtype: np.dtype) -> bool:
    """True for float16/32/64 and bfloat16 (ml_dtypes registers bfloat16 as kind 'V')."""
    return dtype.kind == "f" or dtype.name == "bfloat16"


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are fed at run time (initializers with a default are excluded)."""
    initializers = {t.name for t in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in initializers]


def declared_shape(value_info: onnx.ValueInfoProto) -> tuple[int | str | None, ...] | None:
    """Dims as ints (static), strings (symbolic) or None (unknown); None if rank is unknown."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def input_specs(
    model: onnx.ModelProto,
    *,
    shapes: dict[str, tuple[int, ...]] | None = None,
    dims: dict[str, int] | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
    default_dim: int = 1,
) -> tuple[list[InputSpec], list[str]]:
    """Specs for every fed graph input, and notes stating each default that was used.

    Raises ``UsageError`` when an option names an input or symbol the model does not have,
    when ``--shape`` contradicts a static dim, or when an input is not a supported tensor.
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

    notes: list[str] = []
    defaulted_symbols: list[str] = []
    specs: list[InputSpec] = []
    for vi in inputs:
        if not vi.type.HasField("tensor_type"):
            kind = vi.type.WhichOneof("value") or "unknown"
            raise UsageError(
                f"input {vi.name!r} is a {kind.replace('_type', '')}, not a tensor; verify feeds tensors only"
            )
        dtype = _numpy_dtype(vi.type.tensor_type.elem_type, vi.name)
        declared = declared_shape(vi)
        shape = _resolve_shape(
            vi.name, declared, shapes, dims, default_dim, notes, defaulted_symbols
        )
        specs.append(InputSpec(vi.name, dtype, shape, None, None, declared))

    if defaulted_symbols:
        listed = ", ".join(dict.fromkeys(defaulted_symbols))
        notes.append(
            f"symbolic dims {listed} set to {default_dim} (default; override with --dim NAME=N)"
        )

    index_ranges = _gather_index_ranges(model, specs)
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
                spec.low, spec.high, spec.range_source = (
                    0.0,
                    float(size),
                    f"gather indices ({where})",
                )
                notes.append(f"input {spec.name!r} indexes {where}: values drawn from [0, {size})")
            else:
                spec.low, spec.high = float(DEFAULT_INT_RANGE[0]), float(DEFAULT_INT_RANGE[1])
                notes.append(
                    f"integer input {spec.name!r} drawn from [{DEFAULT_INT_RANGE[0]}, {DEFAULT_INT_RANGE[1]})"
                    " (default; set --range NAME=LO:HI or pass --inputs)"
                )
        if spec.dtype.kind in "iu" and spec.low is not None and spec.high is not None:
            _check_integer_range(spec)
    return specs, notes


def _resolve_shape(
    name: str,
    declared: tuple[int | str | None, ...] | None,
    shapes: dict[str, tuple[int, ...]],
    dims: dict[str, int],
    default_dim: int,
    notes: list[str],
    defaulted_symbols: list[str],
) -> tuple[int, ...]:
    if name in shapes:
        shape = tuple(int(d) for d in shapes[name])
        if declared is not None:
            if len(declared) != len(shape):
                raise UsageError(
                    f"--shape {name}={_fmt_shape(shape)} has rank {len(shape)}, the model declares rank {len(declared)}",
                    hint=f"declared shape: {_fmt_declared(declared)}",
                )
            for axis, (want, got) in enumerate(zip(declared, shape, strict=True)):
                if isinstance(want, int) and want != got:
                    raise UsageError(
                        f"--shape {name}={_fmt_shape(shape)} sets dim {axis} to {got}, the model fixes it at {want}",
                        hint=f"declared shape: {_fmt_declared(declared)}",
                    )
        return shape
    if declared is None:
        raise UsageError(
            f"input {name!r} has no declared shape (not even its rank)",
            hint=f"pass --shape {name}=AxBxC or --inputs FILE.npz",
        )
    resolved: list[int] = []
    for axis, dim in enumerate(declared):
        if isinstance(dim, int):
            resolved.append(dim)
        elif isinstance(dim, str):
            if dim in dims:
                resolved.append(int(dims[dim]))
            else:
                resolved.append(default_dim)
                defaulted_symbols.append(dim)
        else:
            resolved.append(default_dim)
            notes.append(
                f"input {name!r} dim {axis} is unknown; set to {default_dim} (default; use --shape {name}=...)"
            )
    return tuple(resolved)


def _check_integer_range(spec: InputSpec) -> None:
    assert spec.low is not None and spec.high is not None
    if spec.high <= spec.low:
        raise UsageError(f"empty value range [{spec.low:g}, {spec.high:g}) for input {spec.name!r}")
    info = np.iinfo(spec.dtype)
    if spec.low < info.min or spec.high - 1 > info.max:
        raise UsageError(
            f"range [{spec.low:g}, {spec.high:g}) does not fit input {spec.name!r} of type {spec.dtype.name}",
            hint=f"use values within [{info.min}, {info.max}]",
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


def _gather_index_ranges(
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


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])


def generate_inputs(specs: list[InputSpec], seed: int) -> dict[str, np.ndarray]:
    """One input set for ``specs`` (see the module docstring for the distributions)."""
    return {spec.name: _generate_one(spec, _rng(seed, spec.name)) for spec in specs}


def _generate_one(spec: InputSpec, rng: np.random.Generator) -> np.ndarray:
    shape, dtype = spec.shape, spec.dtype
    if is_floating(dtype):
        if spec.low is None or spec.high is None:
            floats = rng.standard_normal(shape)
        else:
            floats = rng.uniform(spec.low, spec.high, shape)
        return np.asarray(floats).astype(dtype)
    if dtype.kind in "iu":
        low = int(spec.low if spec.low is not None else DEFAULT_INT_RANGE[0])
        high = int(spec.high if spec.high is not None else DEFAULT_INT_RANGE[1])
        values = rng.integers(low, high, size=shape, dtype=np.int64)
        if values.size and not values.any():
            nonzero = next((v for v in (1, low, high - 1) if low <= v < high and v != 0), None)
            if nonzero is not None:
                values.flat[0] = nonzero
        return values.astype(dtype)
    if dtype.kind == "b":
        flags = rng.random(shape) < 0.5
        if flags.size:
            flags.flat[0] = True  # never all False
            if flags.size > 1 and flags.all():
                flags.flat[-1] = False
        return flags
    if dtype.kind in "USO":
        picks = rng.integers(0, len(_WORDS), size=shape)
        return np.asarray(_WORDS, dtype=np.str_)[picks]
    raise UsageError(f"cannot generate data of type {dtype} for input {spec.name!r}")


def load_inputs(path: str | Path, specs: list[InputSpec]) -> dict[str, np.ndarray]:
    """Read one input set from an ``.npz`` (one array per input name) and validate it.

    Every fed input must be present, no other name may be, dtypes must match exactly, and
    shapes must match the model's static dims (symbolic dims may take any size).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(
            f"inputs file not found: {path}", hint="pass an .npz written by numpy.savez"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {name: archive[name] for name in archive.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same usage error
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(
            f"cannot read inputs file {path}: {first}",
            hint="write it with numpy.savez(path, **{input_name: array})",
        ) from None
    return check_inputs(data, specs, f"inputs file {path}")


def check_inputs(
    data: Mapping[str, Any], specs: list[InputSpec], where: str = "inputs"
) -> dict[str, np.ndarray]:
    """Validate one input set against ``specs`` (names, dtypes, static dims); return it in spec order."""
    by_name = {spec.name: spec for spec in specs}
    missing = [name for name in by_name if name not in data]
    extra = sorted(set(data) - set(by_name))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unknown {', '.join(extra)}")
        raise UsageError(
            f"{where} do not match the model's inputs: {'; '.join(parts)}",
            hint=f"the model's inputs are: {', '.join(by_name) or '(none)'}",
        )
    return {name: _validated(where, by_name[name], np.asarray(data[name])) for name in by_name}


def _validated(where: str, spec: InputSpec, array: np.ndarray) -> np.ndarray:
    if spec.dtype.name == "bfloat16" and array.dtype.itemsize == 2 and array.dtype.kind in "Vu":
        array = array.view(spec.dtype)  # numpy stores ml_dtypes bfloat16 as raw 2-byte voids
    same_kind_string = spec.dtype.kind in "USO" and array.dtype.kind in "US"
    if array.dtype != spec.dtype and not same_kind_string:
        raise UsageError(
            f"{where}: {spec.name!r} is {array.dtype.name}, the model wants {spec.dtype.name}",
            hint=f"save it with .astype(numpy.{spec.dtype.name})",
        )
    declared = spec.declared_shape
    if declared is not None:
        fits = len(declared) == array.ndim and all(
            not isinstance(want, int) or want == got
            for want, got in zip(declared, array.shape, strict=True)
        )
        if not fits:
            raise UsageError(
                f"{where}: {spec.name!r} has shape {_fmt_shape(array.shape)},"
                f" the model declares {_fmt_declared(declared)}"
            )
    return array


def _fmt_shape(shape: Iterable[int]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def _fmt_declared(shape: Iterable[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _split_option(value: str, option: str, example: str) -> tuple[str, str]:
    name, sep, rest = value.rpartition("=")
    if not sep or not name:
        raise UsageError(
            f"{option} {value!r} is not NAME=VALUE", hint=f"for example {option} {example}"
        )
    return name, rest.strip()


def _no_duplicate(result: dict[str, Any], name: str, option: str) -> None:
    if name in result:
        raise UsageError(f"{option} given twice for {name!r}", hint="give each name once")


def parse_shape_options(values: Iterable[str] | None) -> dict[str, tuple[int, ...]]:
    """``['x=1x3x224x224']`` -> ``{'x': (1, 3, 224, 224)}``; ``x=scalar`` is rank 0."""
    result: dict[str, tuple[int, ...]] = {}
    for value in values or ():
        name, text = _split_option(value, "--shape", "input=1x3x224x224")
        _no_duplicate(result, name, "--shape")
        if text.lower() in ("scalar", "()", ""):
            result[name] = ()
            continue
        parts = text.replace(",", "x").lower().split("x")
        if not all(p.strip().isdigit() for p in parts):
            raise UsageError(
                f"--shape {value!r}: dims must be non-negative integers",
                hint="for example input=1x3x224x224",
            )
        result[name] = tuple(int(p) for p in parts)
    return result


def parse_dim_options(values: Iterable[str] | None) -> dict[str, int]:
    """``['batch=8']`` -> ``{'batch': 8}`` (by symbolic dim name)."""
    result: dict[str, int] = {}
    for value in values or ():
        name, text = _split_option(value, "--dim", "batch=8")
        _no_duplicate(result, name, "--dim")
        if not text.isdigit():
            raise UsageError(
                f"--dim {value!r}: size must be a non-negative integer", hint="for example batch=8"
            )
        result[name] = int(text)
    return result


def parse_range_options(values: Iterable[str] | None) -> dict[str, tuple[float, float]]:
    """``['ids=0:1000']`` -> ``{'ids': (0.0, 1000.0)}``: the half-open range ``[lo, hi)``."""
    result: dict[str, tuple[float, float]] = {}
    for value in values or ():
        name, text = _split_option(value, "--range", "input_ids=0:30522")
        _no_duplicate(result, name, "--range")
        low_text, sep, high_text = text.partition(":")
        try:
            if not sep:
                raise ValueError
            low, high = float(low_text), float(high_text)
        except ValueError:
            raise UsageError(
                f"--range {value!r} is not NAME=LO:HI", hint="for example input_ids=0:30522"
            ) from None
        if not np.isfinite([low, high]).all() or high <= low:
            raise UsageError(f"--range {value!r}: need finite LO < HI")
        result[name] = (low, high)
    return result


def describe_inputs(inputs: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """``{name: {dtype, shape}}`` for reports."""
    return {
        name: {"dtype": array.dtype.name, "shape": list(array.shape)}
        for name, array in inputs.items()
    }


def save_inputs(path: Path, inputs: dict[str, np.ndarray]) -> None:
    """Write one input set as ``.npz`` that ``load_inputs`` reads back (bfloat16 included)."""
    np.savez(path, **inputs)  # type: ignore[arg-type]


__all__ = [
    "DEFAULT_INT_RANGE",
    "InputSpec",
    "check_inputs",
    "describe_inputs",
    "generate_inputs",
    "graph_inputs",
    "input_specs",
    "load_inputs",
    "parse_dim_options",
    "parse_range_options",
    "parse_shape_options",
    "save_inputs",
]
