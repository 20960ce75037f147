"""One way to write a result as JSON: strict, deterministic, non-finite numbers explained.

JSON has no NaN or Infinity (``json.dumps`` would write the JavaScript tokens ``NaN`` and
``Infinity``, which strict parsers reject). Every report bnfold writes (fold, verify, bench,
``export_torch``) goes through ``to_json``, with one convention:

- a non-finite float is written as ``null``, and its reason ``"nan"``, ``"inf"`` or ``"-inf"``
  sits beside it under the same key plus ``_nonfinite``::

      {"speedup": null, "speedup_nonfinite": "inf"}

- inside a list, the element is ``null`` and the list's key plus ``_nonfinite`` maps each such
  position (a string; ``"2.0"`` for nested lists) to its reason::

      {"pair_speedups": [1.02, null], "pair_speedups_nonfinite": {"1": "nan"}}

- keys are sorted and the output is otherwise ``json.dumps(indent=2)``: the same result always
  gives the same text. numpy scalars and arrays become numbers and lists, tuples lists, and
  anything else JSON cannot hold its ``str()``. ``allow_nan=False`` stays on, so nothing
  invalid can slip out.

A ``null`` without a ``_nonfinite`` sibling means "no value" (not measured, not applicable).
"""

from __future__ import annotations

import json
import math
from typing import Any

NONFINITE_SUFFIX = "_nonfinite"


def nonfinite_reason(value: float) -> str:
    """``"nan"``, ``"inf"`` or ``"-inf"``."""
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def to_json(result: Any, *, indent: int | None = 2) -> str:
    """``result`` (dicts, lists, numbers, strings; see the module doc) as strict JSON text."""
    return json.dumps(
        jsonable(result), indent=indent, sort_keys=True, allow_nan=False, ensure_ascii=True
    )


def jsonable(value: Any) -> Any:
    """``value`` with the module's convention applied: what ``to_json`` serializes."""
    converted, _ = _convert(value)
    return converted


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists, tuples and sets as lists."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()  # numpy scalar -> number, array -> (nested) list
    if isinstance(value, (tuple, set, frozenset)):
        return list(value) if not isinstance(value, (set, frozenset)) else sorted(value, key=str)
    return value


def _convert(value: Any) -> tuple[Any, Any]:
    """``(json-ready value, reasons)``; reasons is None when nothing inside was non-finite,
    a reason string for a non-finite float, or ``{position: reason}`` for a list."""
    value = _plain(value)
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value, None
    if isinstance(value, float):
        if math.isfinite(value):
            return value, None
        return None, nonfinite_reason(value)
    if isinstance(value, dict):
        return _convert_dict(value), None
    if isinstance(value, list):
        items: list[Any] = []
        reasons: dict[str, str] = {}
        for index, item in enumerate(value):
            converted, reason = _convert(item)
            items.append(converted)
            if isinstance(reason, str):
                reasons[str(index)] = reason
            elif isinstance(reason, dict):
                reasons.update({f"{index}.{where}": why for where, why in reason.items()})
        return items, reasons or None
    return str(value), None


def _convert_dict(value: dict[Any, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    notes: dict[str, Any] = {}
    for key, item in value.items():
        name = str(key)
        converted, reason = _convert(item)
        result[name] = converted
        if reason is not None:
            notes[name + NONFINITE_SUFFIX] = reason
    for name, reason in notes.items():
        if name in result:
            raise ValueError(f"result key {name!r} is taken: cannot explain a non-finite value")
        result[name] = reason
    return result


__all__ = ["NONFINITE_SUFFIX", "jsonable", "nonfinite_reason", "to_json"]
