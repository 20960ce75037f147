"""Real input data: ``.npz`` files (one array per input name), checked against the specs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .specs import InputSpec, fmt_declared, fmt_shape


def load_inputs(path: str | os.PathLike[str], specs: list[InputSpec]) -> dict[str, np.ndarray]:
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
                f"{where}: {spec.name!r} has shape {fmt_shape(array.shape)},"
                f" the model declares {fmt_declared(declared)}"
            )
    return array


def describe_inputs(inputs: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """``{name: {dtype, shape}}`` for reports."""
    return {
        name: {"dtype": array.dtype.name, "shape": list(array.shape)}
        for name, array in inputs.items()
    }


def save_inputs(path: Path, inputs: dict[str, np.ndarray]) -> None:
    """Write one input set as ``.npz`` that ``load_inputs`` reads back (bfloat16 included)."""
    np.savez(path, **inputs)  # type: ignore[arg-type]
