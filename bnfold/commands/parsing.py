"""Parse the CLI's input-shaping strings ``--shape``, ``--dim``, ``--range`` (one-line errors).

The library takes the parsed values (``{'x': (1, 3, 224, 224)}``, ``{'batch': 8}``,
``{'ids': (0.0, 1000.0)}``); only the command line deals in strings.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import UsageError


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
