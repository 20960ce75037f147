"""The one float-dtype predicate (folds, verification and input generation all ask it)."""

from __future__ import annotations

import numpy as np


def is_float_dtype(dtype: np.dtype) -> bool:
    """True for float16/32/64 and bfloat16 (ml_dtypes registers bfloat16 with kind ``'V'``)."""
    return dtype.kind == "f" or dtype.name == "bfloat16"
