"""Compare one output of the candidate with the reference: metrics and a pass/fail verdict.

Verdict (numpy.allclose semantics, element by element, with the *reference* as ``b``)::

    ok = |cand - ref| <= atol + rtol * |ref|

NaN and Inf are equal only where both sides have them in the same place (same sign for Inf);
anywhere else they count as mismatched elements. A shape or dtype difference fails the
output outright. Non-floating outputs (integers, bool, strings) must be exactly equal.

Metrics, over the elements that are finite on both sides, computed in float64:

- ``max_abs_error = max |cand - ref|``
- ``max_rel_error = max |cand - ref| / |ref|`` over elements with ``ref != 0`` (relative error
  is undefined at zero; ``atol`` covers those elements)
- ``p99_abs_error`` = 99th percentile of ``|cand - ref|`` (one outlier vs. a systematic drift)
- ``cosine_similarity = <cand, ref> / (|cand| |ref|)``, 1.0 when both are all zero
- ``mismatched`` = elements failing the verdict (non-finite disagreements included), of ``total``
- ``tolerance_used = max |cand - ref| / (atol + rtol * |ref|)``: observed over allowed, the
  headroom. ``<= 1`` passes; 0.9 passes by a hair. A non-finite disagreement, or any
  difference where nothing is allowed (exact dtypes), is ``inf``.

Default tolerances, per output dtype (``--atol/--rtol`` override both). A correct fold is not
bit-exact: each scaled weight is rounded once more (<= 0.5 ulp) and the summation order
changes, so the error grows with the dot-product length and the depth. The defaults were set
from correct hand folds of Conv->BN->ReLU stacks (He-initialized weights, random BN
statistics, dense feature-map output, 3 random input sets, onnxruntime CPU at levels
``disable`` and ``all``):

========= ====== ====== ==========================================================================
dtype     atol   rtol   why
========= ====== ====== ==========================================================================
float32   1e-4   1e-4   50 layers x 128 channels, outputs up to ~15: max abs error 3.2e-5
                        (20 x 256: 3.3e-5). ``atol=1e-5`` would fail those correct folds;
                        1e-4 leaves ~3x headroom, while a real folding bug (wrong channel,
                        epsilon or shift) moves outputs by >= 1e-3 relative and still fails.
float64   1e-10  1e-9   the float32 errors scaled by the eps ratio (2**-29) are ~1e-13: ~1000x
                        headroom, still 5 orders tighter than float32.
float16   5e-2   1e-2   50 x 128 in float16: max abs error 3.1e-2 (4 ulp at values ~8-16),
                        p99 1.2e-2; rtol 1e-2 is ~10 ulp (eps 9.8e-4).
bfloat16  4e-1   8e-2   8x float16's epsilon (eps 7.8e-3), so 8x its atol; rtol again ~10 ulp.
========= ====== ====== ==========================================================================

Non-floating outputs compare exactly, whatever ``--atol/--rtol`` say.

Fold sites (intermediate tensors, ``sites.py``) use the same rule, with one change: the
default ``atol`` is scaled by the tensor's size, ``atol_site = atol * min(1, rms(ref))``.
The defaults above were set on outputs of magnitude ~1-15; an intermediate tensor of
magnitude 0.01 (small weights) would hide a 1 % error under an absolute 1e-4. An exact
fold's error at a site is relative (a few ulp of ``|W||x|``), so the scaled ``atol`` keeps
its headroom. An explicit ``--atol`` is used as given.

**Tolerance from the numbers** (``judge_by_float64``). The table above assumes a well
conditioned fold. A BN with ``gamma/sigma`` in the hundreds (EfficientNet's depthwise BNs,
scales up to 327) subtracts two close numbers and scales the difference: the original is then
itself ~1e-3 away from the exact function, and an exact fold, rounded and summed in another
order, lands as far on another side, beyond ``atol + rtol*|ref|``. So an output or site that
fails the rule above is judged again against ``f64``, the original evaluated in float64
(``truth.py``), element by element::

    ok = |cand - f64| <= FLOAT64_FACTOR * e + atol + rtol * |ref|
    e  = max |ref - f64| over the element's channel: its slice along axis 1 and along the
         last axis (NCHW or channels-last), the smaller of the two; the tensor below rank 2

with ``FLOAT64_FACTOR = 4``: the candidate may be no further from the truth than a few times
what float32 arithmetic put between the original and the truth in that channel, plus the
floor above. A rule that held before still holds (``|ref - f64| <= e``, so a candidate within
``atol + rtol*|ref|`` of ``ref`` is within ``e + floor`` of ``f64``); a fold closer to the
truth than the original always passes. A per-channel ``e`` keeps a large error in one channel
from hiding a wrong one elsewhere: a 1 % change of a channel the inputs activate moves it by
~1e-2 of its spread, orders of magnitude over that channel's float32 rounding, and fails.
Where ``f64`` is non-finite but both float32 values are finite the plain rule stands; where no
float64 run can be made (``truth.Float64Truth.unavailable``), where it is more than
``FLOAT64_TRUST`` (1 %, relative over the tensor) away from the original (an op the numpy
evaluator computes otherwise than onnxruntime: then it is no truth), or with an explicit
``--atol``/``--rtol`` (the caller's rule, used as given), the failure stands. The judge runs
on the CPU provider only: on another provider the reference is the original on that provider
and its drift (TF32, bfloat16) is not float32 rounding, so it cannot widen the allowance. The judged
tensors, with ``candidate_error`` (max ``|cand - f64|``), ``original_error`` (max
``|ref - f64|``), ``allowed`` and ``allowance_used`` (the plain rule's observed/allowed), are
listed in the report; ``tolerance_used`` is then the float64 rule's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..storage.dtypes import is_float_dtype

DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-4),
    "float64": (1e-10, 1e-9),
    "float16": (5e-2, 1e-2),
    "bfloat16": (4e-1, 8e-2),
}
EXACT = (0.0, 0.0)
# How much further from float64 than the original a candidate may be (see the docstring).
FLOAT64_FACTOR = 4.0
# A float64 run further than this from the original (relative, over the tensor) is not the
# same function rounded differently (an op evaluated otherwise): it judges nothing.
FLOAT64_TRUST = 1e-2


def plain_number(value: Any, dtype: Any = None) -> str:
    """A number as a person writes it, in its dtype's shortest form: ``0.001``, never
    ``np.float32(0.001)`` nor float32's ``0.0010000000474974513``."""
    if dtype is not None:
        value = np.asarray(value).astype(dtype)[()]
    return str(value)


def tolerance_for(
    dtype: np.dtype, atol: float | None = None, rtol: float | None = None
) -> tuple[float, float]:
    """``(atol, rtol)`` for an output of ``dtype``: the override where given, else the default.

    Non-floating dtypes compare exactly whatever the override says: an integer or boolean
    output that differs at all is a different function.
    """
    if not is_float_dtype(dtype):
        return EXACT
    default_atol, default_rtol = DEFAULT_TOLERANCES.get(dtype.name, DEFAULT_TOLERANCES["float32"])
    return (
        default_atol if atol is None else float(atol),
        default_rtol if rtol is None else float(rtol),
    )


@dataclass
class Float64Judgement:
    """A tensor judged against the float64 original (worst over runs after ``merge``)."""

    candidate_error: float  # max |cand - f64|
    original_error: float  # max |ref - f64|
    allowed: float  # FLOAT64_FACTOR * scale + floor at the element nearest its limit
    allowance_used: float  # what the plain allowance said: max |cand - ref| / floor
    factor: float = FLOAT64_FACTOR

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def merge(self, other: Float64Judgement | None) -> Float64Judgement:
        if other is None:
            return self
        return Float64Judgement(
            candidate_error=max(self.candidate_error, other.candidate_error),
            original_error=max(self.original_error, other.original_error),
            allowed=min(self.allowed, other.allowed),
            allowance_used=max(self.allowance_used, other.allowance_used),
            factor=self.factor,
        )


@dataclass
class StepJudgement:
    """A quantized tensor judged in steps of its scale (``quantized.py``; summed over runs
    after ``merge``): ``moved`` elements of ``total`` differ by at least one step, the
    largest by ``max_steps``; ``grid`` says where the scale comes from."""

    max_steps: int
    moved: int
    total: int
    share_bound: float
    max_steps_allowed: int
    grid: str

    @property
    def share(self) -> float:
        return self.moved / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share": self.share}

    def merge(self, other: StepJudgement | None) -> StepJudgement:
        if other is None:
            return self
        return dataclasses.replace(
            self,
            max_steps=max(self.max_steps, other.max_steps),
            moved=self.moved + other.moved,
            total=self.total + other.total,
        )


@dataclass
class OutputComparison:
    """Metrics and verdict for one output (one run, or the worst over runs after ``merge``)."""

    name: str
    dtype: str
    shape: list[int]
    passed: bool
    reason: str | None
    atol: float
    rtol: float
    max_abs_error: float | None
    max_rel_error: float | None
    p99_abs_error: float | None
    cosine_similarity: float | None
    mismatched: int
    total: int
    nonfinite_mismatched: int = 0
    tolerance_used: float | None = None
    worst_index: list[int] | None = None
    worst_reference: float | None = None
    worst_candidate: float | None = None
    # Set when the tensor failed ``atol + rtol*|ref|`` and was judged against float64.
    float64: Float64Judgement | None = None
    # Set when the tensor is quantized and was judged in steps of its scale (``quantized.py``).
    steps: StepJudgement | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = self.steps.to_dict() if self.steps is not None else None
        return data

    def merge(self, other: OutputComparison) -> OutputComparison:
        """Worst of both runs: max errors, min cosine, summed counts, first failure reason."""

        def worst(a: float | None, b: float | None, pick: Any = max) -> float | None:
            values = [v for v in (a, b) if v is not None]
            return pick(values) if values else None

        take_other_worst = (other.max_abs_error or 0.0) > (self.max_abs_error or 0.0)
        source = other if take_other_worst else self
        return OutputComparison(
            name=self.name,
            dtype=self.dtype,
            shape=self.shape,
            passed=self.passed and other.passed,
            reason=self.reason or other.reason,
            atol=self.atol,
            rtol=self.rtol,
            max_abs_error=worst(self.max_abs_error, other.max_abs_error),
            max_rel_error=worst(self.max_rel_error, other.max_rel_error),
            p99_abs_error=worst(self.p99_abs_error, other.p99_abs_error),
            cosine_similarity=worst(self.cosine_similarity, other.cosine_similarity, min),
            mismatched=self.mismatched + other.mismatched,
            total=self.total + other.total,
            nonfinite_mismatched=self.nonfinite_mismatched + other.nonfinite_mismatched,
            tolerance_used=worst(self.tolerance_used, other.tolerance_used),
            worst_index=source.worst_index,
            worst_reference=source.worst_reference,
            worst_candidate=source.worst_candidate,
            float64=self.float64.merge(other.float64) if self.float64 else other.float64,
            steps=self.steps.merge(other.steps) if self.steps else other.steps,
        )


def _failed_outright(
    name: str, ref: np.ndarray, cand: np.ndarray, reason: str, atol: float, rtol: float
) -> OutputComparison:
    return OutputComparison(
        name=name,
        dtype=ref.dtype.name,
        shape=list(ref.shape),
        passed=False,
        reason=reason,
        atol=atol,
        rtol=rtol,
        max_abs_error=None,
        max_rel_error=None,
        p99_abs_error=None,
        cosine_similarity=None,
        mismatched=int(ref.size),
        total=int(ref.size),
        tolerance_used=math.inf,
    )


def compare_output(
    name: str,
    reference: Any,
    candidate: Any,
    *,
    atol: float | None = None,
    rtol: float | None = None,
) -> OutputComparison:
    """Compare ``candidate`` against ``reference`` for output ``name`` (see module docstring)."""
    ref, cand = np.asarray(reference), np.asarray(candidate)
    tol_atol, tol_rtol = tolerance_for(ref.dtype, atol, rtol)
    if ref.dtype != cand.dtype:
        return _failed_outright(
            name,
            ref,
            cand,
            f"dtype {cand.dtype.name} differs from reference {ref.dtype.name}",
            tol_atol,
            tol_rtol,
        )
    if ref.shape != cand.shape:
        return _failed_outright(
            name,
            ref,
            cand,
            f"shape {list(cand.shape)} differs from reference {list(ref.shape)}",
            tol_atol,
            tol_rtol,
        )
    if is_float_dtype(ref.dtype):
        return _compare_floating(name, ref, cand, tol_atol, tol_rtol)
    return _compare_exact(name, ref, cand)


def _compare_floating(
    name: str, ref_in: np.ndarray, cand_in: np.ndarray, atol: float, rtol: float
) -> OutputComparison:
    ref = ref_in.astype(np.float64)
    cand = cand_in.astype(np.float64)
    finite = np.isfinite(ref) & np.isfinite(cand)
    # Non-finite agreement: both NaN, or the same infinity, at the same element.
    same_nonfinite = (np.isnan(ref) & np.isnan(cand)) | (np.isinf(ref) & (ref == cand))
    nonfinite_bad = ~finite & ~same_nonfinite

    diff = np.abs(np.subtract(cand, ref, where=finite, out=np.zeros_like(ref)))
    limit = atol + rtol * np.abs(np.where(finite, ref, 0.0))
    finite_bad = finite & (diff > limit)
    bad = finite_bad | nonfinite_bad
    mismatched = int(bad.sum())

    used = _tolerance_used(diff, limit, finite, bool(nonfinite_bad.any()))
    finite_diff = diff[finite]
    finite_ref = ref[finite]
    finite_cand = cand[finite]
    if finite_diff.size:
        max_abs = float(finite_diff.max())
        p99 = float(np.percentile(finite_diff, 99))
        nonzero = finite_ref != 0
        max_rel = (
            float((finite_diff[nonzero] / np.abs(finite_ref[nonzero])).max())
            if nonzero.any()
            else 0.0
        )
        cosine = _cosine(finite_ref, finite_cand)
    else:
        max_abs = p99 = max_rel = 0.0
        cosine = 1.0

    # The element to show a human: the first non-finite disagreement, else the worst excess.
    worst_index = worst_ref = worst_cand = None
    if mismatched:
        if nonfinite_bad.any():
            flat = int(np.flatnonzero(nonfinite_bad)[0])
        else:
            excess = np.where(finite_bad, diff - limit, -np.inf)
            flat = int(np.argmax(excess))
        index = np.unravel_index(flat, ref.shape) if ref.shape else ()
        worst_index = [int(i) for i in index]
        worst_ref, worst_cand = float(ref.flat[flat]), float(cand.flat[flat])

    reason = None
    if mismatched:
        where = f"[{', '.join(str(i) for i in worst_index or [])}]"
        reason = (
            f"{mismatched} of {ref.size} elements out of tolerance"
            f" (atol={atol:g}, rtol={rtol:g}); e.g. at {where}: reference {plain_number(worst_ref, ref_in.dtype)},"
            f" candidate {plain_number(worst_cand, cand_in.dtype)}"
        )
    return OutputComparison(
        name=name,
        dtype=ref_in.dtype.name,
        shape=list(ref.shape),
        passed=mismatched == 0,
        reason=reason,
        atol=atol,
        rtol=rtol,
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        p99_abs_error=p99,
        cosine_similarity=cosine,
        mismatched=mismatched,
        total=int(ref.size),
        nonfinite_mismatched=int(nonfinite_bad.sum()),
        tolerance_used=used,
        worst_index=worst_index,
        worst_reference=worst_ref,
        worst_candidate=worst_cand,
    )


def _tolerance_used(
    diff: np.ndarray, limit: np.ndarray, finite: np.ndarray, nonfinite_bad: bool
) -> float:
    """``max diff / limit`` over finite elements (``inf`` where ``diff > 0 = limit``)."""
    if nonfinite_bad:
        return math.inf
    if not finite.any():
        return 0.0
    d, lim = diff[finite], limit[finite]
    zero_limit = lim == 0
    if (d[zero_limit] > 0).any():
        return math.inf
    if zero_limit.all():
        return 0.0
    return float((d[~zero_limit] / lim[~zero_limit]).max())


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm_a, norm_b = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if norm_a == 0.0 and norm_b == 0.0:
        return 1.0
    if norm_a == 0.0 or norm_b == 0.0:
        return 0.0
    return float(np.dot(a.ravel(), b.ravel()) / (norm_a * norm_b))


def _compare_exact(name: str, ref: np.ndarray, cand: np.ndarray) -> OutputComparison:
    bad = ref != cand
    mismatched = int(np.count_nonzero(bad))
    numeric = ref.dtype.kind in "iub"
    max_abs = None
    if numeric:
        delta = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
        max_abs = float(delta.max()) if delta.size else 0.0
    worst_index = worst_ref = worst_cand = None
    reason = None
    if mismatched:
        flat = int(np.flatnonzero(bad)[0])
        worst_index = [int(i) for i in np.unravel_index(flat, ref.shape)] if ref.shape else []
        if numeric:
            worst_ref, worst_cand = float(ref.flat[flat]), float(cand.flat[flat])
        reason = (
            f"{mismatched} of {ref.size} elements differ ({ref.dtype.name} outputs must be equal);"
            f" first at [{', '.join(str(i) for i in worst_index)}]: reference {plain_number(ref.flat[flat])},"
            f" candidate {plain_number(cand.flat[flat])}"
        )
    return OutputComparison(
        name=name,
        dtype=ref.dtype.name,
        shape=list(ref.shape),
        passed=mismatched == 0,
        reason=reason,
        atol=0.0,
        rtol=0.0,
        max_abs_error=max_abs,
        max_rel_error=None,
        p99_abs_error=None,
        cosine_similarity=None,
        mismatched=mismatched,
        total=int(ref.size),
        tolerance_used=math.inf if mismatched else 0.0,
        worst_index=worst_index,
        worst_reference=worst_ref,
        worst_candidate=worst_cand,
    )


def compare_outputs(
    reference: dict[str, Any],
    candidate: dict[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
) -> dict[str, OutputComparison]:
    """Compare every reference output with the candidate output of the same name.

    Matching is by name, never by position. Sequence outputs are compared element-wise as
    ``name[i]``. A reference output missing from the candidate fails.
    """
    results: dict[str, OutputComparison] = {}
    for name, ref_value in reference.items():
        if name not in candidate:
            empty = np.asarray(ref_value) if not isinstance(ref_value, list) else np.zeros(0)
            results[name] = _failed_outright(
                name, empty, empty, "missing from the candidate's outputs", 0.0, 0.0
            )
            continue
        cand_value = candidate[name]
        if isinstance(ref_value, list) or isinstance(cand_value, list):
            results.update(_compare_sequences(name, ref_value, cand_value, atol, rtol))
            continue
        results[name] = compare_output(name, ref_value, cand_value, atol=atol, rtol=rtol)
    return results


def _compare_sequences(
    name: str, ref: Any, cand: Any, atol: float | None, rtol: float | None
) -> dict[str, OutputComparison]:
    if not isinstance(ref, list) or not isinstance(cand, list) or len(ref) != len(cand):
        length = len(ref) if isinstance(ref, list) else 0
        marker = np.zeros(0)
        return {
            name: _failed_outright(
                name, marker, marker, f"sequence length differs from reference ({length})", 0.0, 0.0
            )
        }
    return {
        f"{name}[{i}]": compare_output(f"{name}[{i}]", r, c, atol=atol, rtol=rtol)
        for i, (r, c) in enumerate(zip(ref, cand, strict=True))
    }


def site_atol(reference: Any, atol: float | None) -> float | None:
    """The ``atol`` for a fold site: the default scaled by ``min(1, rms(ref))`` (see above)."""
    ref = np.asarray(reference)
    if atol is not None or not is_float_dtype(ref.dtype) or ref.size == 0:
        return atol
    values = ref.astype(np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return atol
    rms = float(np.sqrt(np.mean(values * values)))
    default_atol = tolerance_for(ref.dtype)[0]
    return default_atol * min(1.0, rms) if rms > 0 else default_atol


def compare_sites(
    reference: dict[str, Any],
    candidate: dict[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
) -> dict[str, OutputComparison]:
    """``compare_outputs`` for fold sites: each site's ``atol`` from ``site_atol``."""
    results: dict[str, OutputComparison] = {}
    for name, value in reference.items():
        scaled = None if isinstance(value, list) else site_atol(value, atol)
        results.update(compare_outputs({name: value}, candidate, atol=scaled, rtol=rtol))
    return results


def relative_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``||a - b|| / ||b||`` (0 when both are all zero, inf when only ``b`` is)."""
    norm = float(np.linalg.norm(b))
    distance = float(np.linalg.norm(a - b))
    if norm == 0.0:
        return 0.0 if distance == 0.0 else math.inf
    return distance / norm


def _channel_max(error: np.ndarray) -> np.ndarray:
    """Per element, the largest ``error`` in its channel: its slice along axis 1 and along
    the last axis (NCHW or channels-last; the smaller of the two), the whole tensor below
    rank 2."""
    if error.ndim < 2:
        return np.full(error.shape, error.max() if error.size else 0.0)
    per_axis = []
    for axis in {1, error.ndim - 1}:
        others = tuple(a for a in range(error.ndim) if a != axis)
        per_axis.append(np.max(error, axis=others, keepdims=True))
    scale = per_axis[0] if len(per_axis) == 1 else np.minimum(per_axis[0], per_axis[1])
    return np.broadcast_to(scale, error.shape)


def judge_by_float64(
    comparison: OutputComparison, reference: Any, candidate: Any, truth: Any
) -> OutputComparison:
    """``comparison`` judged again against ``truth``, the float64 original (docstring above).

    Returned unchanged when it passed, is not floating, failed on shape or dtype, or the truth
    does not fit it.
    """
    ref_in = np.asarray(reference)
    if comparison.passed or comparison.max_abs_error is None or not is_float_dtype(ref_in.dtype):
        return comparison
    exact = np.asarray(truth, dtype=np.float64)
    ref = ref_in.astype(np.float64)
    cand = np.asarray(candidate).astype(np.float64)
    if exact.shape != ref.shape or cand.shape != ref.shape:
        return comparison
    finite = np.isfinite(ref) & np.isfinite(cand) & np.isfinite(exact)
    apart = relative_distance(ref[finite], exact[finite])
    if apart > FLOAT64_TRUST:
        return dataclasses.replace(
            comparison,
            reason=f"{comparison.reason}; the float64 run of the original is {apart:.2g} away"
            " from it (relative): not the same function, so not used as the truth",
        )
    same_nonfinite = (np.isnan(ref) & np.isnan(cand)) | (np.isinf(ref) & (ref == cand))
    nonfinite_bad = ~(np.isfinite(ref) & np.isfinite(cand)) & ~same_nonfinite
    original_error = np.abs(np.where(finite, ref - exact, 0.0))
    candidate_error = np.abs(np.where(finite, cand - exact, 0.0))
    floor = comparison.atol + comparison.rtol * np.abs(np.where(finite, ref, 0.0))
    limit = FLOAT64_FACTOR * _channel_max(original_error) + floor
    # An element with a non-finite truth but finite float32 values keeps the plain rule.
    plain = np.isfinite(ref) & np.isfinite(cand) & ~np.isfinite(exact)
    limit = np.where(plain, floor, limit)
    candidate_error = np.where(plain, np.abs(np.where(plain, cand - ref, 0.0)), candidate_error)
    bad = ((finite | plain) & (candidate_error > limit)) | nonfinite_bad
    mismatched = int(bad.sum())
    used = _tolerance_used(candidate_error, limit, finite | plain, bool(nonfinite_bad.any()))
    ratio = np.where(limit > 0, candidate_error / np.where(limit > 0, limit, 1.0), 0.0)
    worst = int(np.argmax(ratio)) if ratio.size else 0
    judgement = Float64Judgement(
        candidate_error=float(candidate_error.max()) if candidate_error.size else 0.0,
        original_error=float(original_error.max()) if original_error.size else 0.0,
        allowed=float(limit.flat[worst]) if limit.size else 0.0,
        allowance_used=comparison.tolerance_used or 0.0,
    )
    reason = None
    if mismatched:
        flat = (
            int(np.flatnonzero(nonfinite_bad)[0])
            if nonfinite_bad.any()
            else int(np.argmax(np.where(bad, ratio, -np.inf)))
        )
        where = ", ".join(str(int(i)) for i in np.unravel_index(flat, ref.shape))
        reason = (
            f"{mismatched} of {ref.size} elements out of tolerance even against float64"
            f" (|cand-f64| <= {FLOAT64_FACTOR:g} x the original's |ref-f64| in the channel"
            f" + atol={comparison.atol:g} + rtol={comparison.rtol:g}*|ref|); e.g. at [{where}]:"
            f" reference {plain_number(ref.flat[flat])}, candidate {plain_number(cand.flat[flat])},"
            f" float64 {plain_number(exact.flat[flat])}"
        )
    judged = dataclasses.replace(
        comparison,
        passed=mismatched == 0,
        reason=reason,
        mismatched=mismatched,
        nonfinite_mismatched=int(nonfinite_bad.sum()),
        tolerance_used=used,
        float64=judgement,
    )
    if not mismatched:  # nothing to show a human
        judged.worst_index = judged.worst_reference = judged.worst_candidate = None
    return judged
