"""Metrics and verdicts of compare.py, checked against values computed by hand."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from bnfold.verify.compare import DEFAULT_TOLERANCES, compare_output, compare_outputs, tolerance_for


def test_metrics_match_hand_computation() -> None:
    ref = np.array([1.0, -2.0, 0.0, 4.0], np.float32)
    cand = np.array([1.0, -2.5, 0.25, 4.0], np.float32)
    c = compare_output("y", ref, cand, atol=0.1, rtol=0.1)
    assert c.max_abs_error == pytest.approx(0.5)
    assert c.max_rel_error == pytest.approx(0.25)  # 0.5/2; the zero reference is excluded
    assert c.p99_abs_error == pytest.approx(np.percentile([0, 0.5, 0.25, 0], 99))
    expected_cos = float(ref @ cand / (np.linalg.norm(ref) * np.linalg.norm(cand)))
    assert c.cosine_similarity == pytest.approx(expected_cos)
    # |d| <= 0.1 + 0.1|ref|: element 1 has 0.5 > 0.3, element 2 has 0.25 > 0.1
    assert (c.mismatched, c.total, c.passed) == (2, 4, False)
    assert c.worst_index == [1] and c.worst_reference == -2.0 and c.worst_candidate == -2.5
    assert "2 of 4 elements" in (c.reason or "")


def test_allclose_semantics_at_the_boundary() -> None:
    ref = np.array([100.0], np.float64)
    inside = compare_output("y", ref, ref + (1.0 + 0.01 * 100.0) * 0.999, atol=1.0, rtol=0.01)
    outside = compare_output("y", ref, ref + (1.0 + 0.01 * 100.0) * 1.001, atol=1.0, rtol=0.01)
    assert inside.passed and not outside.passed
    # allclose agrees on both sides of the boundary
    assert np.allclose(ref + 1.998, ref, atol=1.0, rtol=0.01)
    assert not np.allclose(ref + 2.002, ref, atol=1.0, rtol=0.01)


def test_identical_outputs_pass_with_perfect_metrics() -> None:
    ref = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    c = compare_output("y", ref, ref.copy())
    assert c.passed and c.mismatched == 0 and c.max_abs_error == 0.0
    assert c.cosine_similarity == pytest.approx(1.0)


def test_nan_and_inf_equal_only_in_the_same_place() -> None:
    ref = np.array([np.nan, np.inf, -np.inf, 1.0], np.float32)
    same = compare_output("y", ref, ref.copy())
    assert same.passed and same.max_abs_error == 0.0

    moved = compare_output("y", ref, np.array([1.0, np.inf, -np.inf, np.nan], np.float32))
    assert not moved.passed and moved.nonfinite_mismatched == 2 and moved.mismatched == 2

    sign = compare_output("y", ref, np.array([np.nan, -np.inf, -np.inf, 1.0], np.float32))
    assert not sign.passed and sign.mismatched == 1 and sign.worst_index == [1]

    # all-NaN on both sides: metrics over no finite element are still defined
    nan = compare_output("y", np.full(3, np.nan), np.full(3, np.nan))
    assert nan.passed and nan.cosine_similarity == 1.0


def test_shape_and_dtype_differences_fail_outright() -> None:
    ref = np.zeros((2, 3), np.float32)
    shape = compare_output("y", ref, np.zeros((3, 2), np.float32))
    assert not shape.passed and "shape [3, 2] differs from reference [2, 3]" in (shape.reason or "")
    dtype = compare_output("y", ref, np.zeros((2, 3), np.float16))
    assert not dtype.passed and "dtype float16" in (dtype.reason or "")
    assert shape.max_abs_error is None and shape.mismatched == 6


def test_non_float_outputs_compare_exactly_even_with_loose_tolerance() -> None:
    ref = np.array([1, 2, 3], np.int64)
    c = compare_output("idx", ref, np.array([1, 2, 4], np.int64), atol=10.0, rtol=10.0)
    assert not c.passed and c.mismatched == 1 and c.atol == 0.0 and c.max_abs_error == 1.0
    assert compare_output("b", np.array([True, False]), np.array([True, False])).passed
    assert not compare_output("s", np.array(["a", "b"]), np.array(["a", "c"])).passed


def test_default_tolerances_per_dtype_and_overrides() -> None:
    assert tolerance_for(np.dtype(np.float32)) == DEFAULT_TOLERANCES["float32"]
    assert tolerance_for(np.dtype(np.float64)) == DEFAULT_TOLERANCES["float64"]
    assert tolerance_for(np.dtype(np.float16)) == DEFAULT_TOLERANCES["float16"]
    assert tolerance_for(np.dtype(ml_dtypes.bfloat16)) == DEFAULT_TOLERANCES["bfloat16"]
    assert tolerance_for(np.dtype(np.float32), atol=1e-3) == (
        1e-3,
        DEFAULT_TOLERANCES["float32"][1],
    )
    assert tolerance_for(np.dtype(np.int32), atol=1.0, rtol=1.0) == (0.0, 0.0)
    # looser for lower precision, tight for float64
    order = ["float64", "float32", "float16", "bfloat16"]
    atols = [DEFAULT_TOLERANCES[d][0] for d in order]
    assert atols == sorted(atols)


def test_float32_default_catches_a_relative_1e3_error_but_not_rounding() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(1000).astype(np.float32)
    rounding = (ref.astype(np.float64) * (1 + 3e-7)).astype(np.float32)  # a few ulp
    assert compare_output("y", ref, rounding).passed
    wrong = (ref.astype(np.float64) * (1 + 1e-3)).astype(np.float32)
    assert not compare_output("y", ref, wrong).passed


def test_bfloat16_outputs_are_compared_as_floats() -> None:
    ref = np.array([1.0, 2.0], ml_dtypes.bfloat16)
    c = compare_output("y", ref, np.array([1.0, 3.0], ml_dtypes.bfloat16))  # 1.0 > 0.4 + 0.08*2
    assert not c.passed and c.max_abs_error == pytest.approx(1.0) and c.dtype == "bfloat16"
    assert compare_output("y", ref, np.array([1.0, 2.5], ml_dtypes.bfloat16)).passed  # 0.5 <= 0.56


def test_outputs_are_matched_by_name_not_position() -> None:
    a, b = np.ones(2, np.float32), np.zeros(3, np.float32)
    reference = {"a": a, "b": b}
    swapped_order = {"b": b.copy(), "a": a.copy()}
    results = compare_outputs(reference, swapped_order)
    assert list(results) == ["a", "b"] and all(c.passed for c in results.values())
    missing = compare_outputs(reference, {"a": a})
    assert not missing["b"].passed and "missing" in (missing["b"].reason or "")


def test_sequences_compare_element_wise() -> None:
    ref = {"s": [np.ones(2, np.float32), np.zeros(2, np.float32)]}
    ok = compare_outputs(ref, {"s": [np.ones(2, np.float32), np.zeros(2, np.float32)]})
    assert set(ok) == {"s[0]", "s[1]"} and all(c.passed for c in ok.values())
    short = compare_outputs(ref, {"s": [np.ones(2, np.float32)]})
    assert not short["s"].passed


def test_merge_keeps_the_worst_of_runs() -> None:
    ref = np.array([1.0, 2.0], np.float32)
    good = compare_output("y", ref, ref + np.float32(1e-6))
    bad = compare_output("y", ref, ref + np.float32(0.5))
    merged = good.merge(bad)
    assert not merged.passed and merged.total == 4 and merged.mismatched == 2
    assert merged.max_abs_error == pytest.approx(0.5)
    assert merged.cosine_similarity == min(good.cosine_similarity or 1, bad.cosine_similarity or 1)
    assert merged.worst_candidate == pytest.approx(1.5)


def test_cosine_of_zero_vectors() -> None:
    zero = np.zeros(3, np.float32)
    assert compare_output("y", zero, zero).cosine_similarity == 1.0
    c = compare_output("y", zero, np.ones(3, np.float32))
    assert c.cosine_similarity == 0.0 and not c.passed
    assert not math.isnan(c.max_rel_error or 0.0)
