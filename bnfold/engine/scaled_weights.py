"""A fold into a large weight still in its file, as a recipe (``bnfold.storage.recipes``).

``scaled_constant`` is what a pattern calls instead of computing ``round(W · f)`` in memory:
it returns the recipe (``W``'s file bytes, then the factors) with the rounding statistics that
``foldmath.round_to`` would report, measured chunk by chunk from the weight the pattern
already read, so memory does not grow with the model.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx

from ..storage import recipes
from .foldmath import LOW_PRECISION, Rounded, round_to
from .graph import GraphView


def scaled_constant(
    view: GraphView, name: str, weight: np.ndarray, factors: np.ndarray
) -> Rounded | None:
    """``weight · factors`` rounded to ``weight``'s dtype, as a recipe on ``name``'s file bytes.

    ``weight`` is the value the fold read of ``name``. None when ``name`` is not a large
    tensor whose bytes (or recipe) lie in a file: the caller computes in memory then. The
    returned ``Rounded`` carries the recipe as its ``value`` and the rounding error measured
    from ``weight`` chunk by chunk (for float16/bfloat16), exactly as ``round_to`` would.
    """
    if weight.nbytes < recipes.MIN_RECIPE_BYTES or weight.ndim == 0 or view.outer is not None:
        # Subgraph tensors are written inline (the writer streams main-graph initializers).
        return None
    tensor = _initializer(view, name)
    if tensor is None:
        return None
    source = recipes.source_recipe(tensor, view.cache.base_dir)
    if source is None or source.shape != weight.shape or source.dtype != weight.dtype:
        return None
    recipe = source.then(factors)
    stats = _rounding_stats(weight, recipe.stages[-1], weight.dtype)
    return Rounded(replace(recipe, known_finite=stats[2]), stats[0], stats[1])


def _initializer(view: GraphView, name: str) -> onnx.TensorProto | None:
    """The initializer ``name`` resolves to (this scope or an enclosing one), if constant."""
    current: GraphView | None = view
    while current is not None and not current.defines(name):
        current = current.outer
    if current is None or name not in current.initializers or current.is_overridable(name):
        return None
    return current.initializers[name]


def _rounding_stats(
    weight: np.ndarray, factors: np.ndarray, dtype: np.dtype
) -> tuple[float, float, bool]:
    """``(max_abs_error, max_rel_error, finite)`` of ``round(weight · factors)``, as
    ``foldmath.round_to`` measures them, without holding the result.

    float32/float64: no error is measured (as ``round_to``), and the result is finite when
    ``max|W| · max|f|`` is below the dtype's largest value (rounding is monotonic, so no
    product exceeds that bound); otherwise it is evaluated to find out.
    """
    low = np.dtype(dtype).name in LOW_PRECISION
    if not low and weight.size:
        peak = max(abs(float(np.max(weight))), abs(float(np.min(weight))))
        bound = peak * float(np.max(np.abs(factors)))
        if np.isfinite(bound) and bound <= float(np.finfo(dtype).max):
            return 0.0, 0.0, True
    rows = weight.shape[0]
    row_bytes = max(1, weight.size // max(rows, 1)) * 8
    step = max(1, recipes.CHUNK_BYTES // row_bytes)
    max_abs, peak_exact, finite = 0.0, 0.0, True
    for start in range(0, rows, step):
        block = factors if factors.shape[0] == 1 else factors[start : start + step]
        exact = np.asarray(weight[start : start + step], dtype=np.float64) * block
        rounded = round_to(exact, dtype)
        finite = finite and bool(np.all(np.isfinite(rounded.value)))
        if low and exact.size:
            max_abs = max(max_abs, rounded.max_abs_error)
            peak_exact = max(peak_exact, float(np.max(np.abs(exact))))
    if not low:
        return 0.0, 0.0, finite
    return max_abs, (max_abs / peak_exact if peak_exact > 0 else 0.0), finite
