"""What ``verify`` judges with, as frozen objects built once and passed whole.

- ``Tolerance``: the ``atol``/``rtol`` overrides over the per-dtype defaults of
  ``compare.DEFAULT_TOLERANCES`` (the one table; ``--help`` is written from it).
- ``VerifySettings``: the input plan and runtime choice verify shares with bench
  (``bnfold.runtime.settings``), the tolerance, the sites compared (``sites.SiteChoice``),
  where a failing input set is saved and whether the structure is checked.

``bnfold.verify.verify`` builds a ``VerifySettings`` from its keyword arguments in its first
line; the command line builds one from its option groups. Both hand it to ``verify_with``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from ..runtime.settings import InputPlan, RuntimeChoice
from .compare import DEFAULT_TOLERANCES, tolerance_for
from .sites import SiteChoice

# The optimization levels the candidate runs at: what deployments use.
DEFAULT_LEVELS = "all"

SaveFailing = str | os.PathLike[str] | bool | None

_SHORT_DTYPES = {"float32": "fp32", "float64": "fp64", "float16": "fp16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class Tolerance:
    """``atol``/``rtol`` overrides (None: the per-dtype default of ``DEFAULT_TOLERANCES``)."""

    atol: float | None = None
    rtol: float | None = None

    @classmethod
    def of(cls, atol: float | None = None, rtol: float | None = None) -> Tolerance:
        for name, value in (("atol", atol), ("rtol", rtol)):
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise UsageError(f"--{name} must be a finite number >= 0, got {value}")
        return cls(atol, rtol)

    def for_dtype(self, dtype: np.dtype) -> tuple[float, float]:
        """``(atol, rtol)`` in force for an output of ``dtype``."""
        return tolerance_for(dtype, self.atol, self.rtol)


def default_tolerance_text(which: str) -> str:
    """``fp32 1e-4, fp64 1e-10, fp16 5e-2, bf16 0.4`` for ``atol`` (``rtol``): the defaults."""
    index = ("atol", "rtol").index(which)
    return ", ".join(
        f"{_SHORT_DTYPES.get(dtype, dtype)} {_short_number(pair[index])}"
        for dtype, pair in DEFAULT_TOLERANCES.items()
    )


def _short_number(value: float) -> str:
    """``1e-4``, ``5e-2``, ``0.4``: the shortest way a person writes a tolerance."""
    if value == 0 or value >= 0.1:
        return f"{value:g}"
    mantissa, _, exponent = f"{value:e}".partition("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


@dataclass(frozen=True)
class VerifySettings:
    """Everything ``verify`` needs besides the two models."""

    inputs: InputPlan = field(default_factory=InputPlan)
    runtime: RuntimeChoice = field(default_factory=lambda: RuntimeChoice.of(levels=DEFAULT_LEVELS))
    tolerance: Tolerance = Tolerance()
    sites: SiteChoice = SiteChoice()
    save_failing: SaveFailing = None
    check_structure: bool = True
