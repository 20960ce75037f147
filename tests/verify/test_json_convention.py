"""One JSON convention for every result (``bnfold.storage.results``): a non-finite number is
``null`` with its reason beside it, and the text is strict JSON a strict parser accepts."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from bnfold.bench.records import Comparison
from bnfold.bench.report import BenchReport
from bnfold.bench.stats import SpeedupEstimate
from bnfold.engine.outcomes import Fold
from bnfold.engine.report import FoldReport
from bnfold.storage.results import to_json
from bnfold.verify.compare import compare_output
from bnfold.verify.report import ProviderResult, VerifyReport


def strict_loads(text: str) -> Any:
    """``json.loads`` that rejects ``NaN``/``Infinity`` (Python's own parser accepts them)."""

    def reject(token: str) -> Any:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=reject)


def test_non_finite_numbers_are_null_with_the_reason_beside_them() -> None:
    text = to_json(
        {
            "speedup": math.inf,
            "low": -math.inf,
            "mean": np.float32("nan"),
            "finite": 1.5,
            "pairs": [1.0, math.nan, [2.0, math.inf]],
            "nested": {"x": math.inf},
            "missing": None,
        }
    )
    data = strict_loads(text)
    assert data["speedup"] is None and data["speedup_nonfinite"] == "inf"
    assert data["low"] is None and data["low_nonfinite"] == "-inf"
    assert data["mean"] is None and data["mean_nonfinite"] == "nan"
    assert data["finite"] == 1.5 and "finite_nonfinite" not in data
    assert data["pairs"] == [1.0, None, [2.0, None]]
    assert data["pairs_nonfinite"] == {"1": "nan", "2.1": "inf"}
    assert data["nested"] == {"x": None, "x_nonfinite": "inf"}
    assert data["missing"] is None and "missing_nonfinite" not in data
    assert "NaN" not in text and "Infinity" not in text


def test_output_is_sorted_and_deterministic() -> None:
    first = to_json({"b": 1, "a": {"d": 2.0, "c": np.int64(3)}})
    second = to_json({"a": {"c": 3, "d": 2.0}, "b": 1})
    assert first == second
    assert list(strict_loads(first)) == ["a", "b"]


def test_a_taken_sibling_key_is_an_error_not_a_silent_overwrite() -> None:
    with pytest.raises(ValueError, match="taken"):
        to_json({"x": math.nan, "x_nonfinite": "mine"})


def test_verify_report_with_nan_and_inf_is_strict_json() -> None:
    # A NaN where the reference is finite: a non-finite disagreement, tolerance used is inf.
    comparison = compare_output("y", np.array([1.0, 2.0]), np.array([np.nan, 2.0]))
    assert comparison.tolerance_used == math.inf
    comparison.worst_candidate = math.nan
    result = ProviderResult("cpu", "disable", "failed", outputs={"y": comparison})
    report = VerifyReport(
        original="a.onnx",
        candidate="b.onnx",
        providers=[result],
        seeds=[0],
        runs=1,
        inputs=[],
        atol=None,
        rtol=None,
        onnxruntime_version="1",
        bnfold_version="0",
    )
    text = report.to_json()
    data = strict_loads(text)
    output = data["providers"][0]["outputs"]["y"]
    assert output["tolerance_used"] is None and output["tolerance_used_nonfinite"] == "inf"
    assert output["worst_candidate"] is None and output["worst_candidate_nonfinite"] == "nan"
    assert '"NaN"' not in text and "Infinity" not in text


def test_bench_report_with_nan_and_inf_is_strict_json() -> None:
    estimate = SpeedupEstimate(math.inf, 0.9, math.inf, 0.95, 2, math.nan, 0.03, "inconclusive")
    comparison = Comparison("cpu", "all", None, 0.0, 1.0, estimate, pair_speedups=[math.inf, 1.0])
    report = BenchReport(
        original="a.onnx",
        candidate="b.onnx",
        results=[],
        comparisons=[comparison],
        unavailable=[],
        settings={"pairs": 2},
        machine={},
        onnxruntime_version="1",
    )
    text = report.to_json()
    row = strict_loads(text)["comparisons"][0]
    assert row["speedup"] is None and row["speedup_nonfinite"] == "inf"
    assert row["ci_high"] is None and row["ci_high_nonfinite"] == "inf"
    assert row["pair_sd_pct"] is None and row["pair_sd_pct_nonfinite"] == "nan"
    assert row["pair_speedups"] == [None, 1.0] and row["pair_speedups_nonfinite"] == {"0": "inf"}
    assert text.endswith("}\n") and "NaN" not in text and "Infinity" not in text


def test_fold_report_with_a_nan_is_strict_json() -> None:
    fold = Fold("bn", "conv", "conv_bn", "producer", dtype="float16", rounding_error=math.nan)
    text = FoldReport(model="m.onnx", folds=[fold]).to_json()
    data = strict_loads(text)
    assert data["folds"][0]["rounding_error"] is None
    assert data["folds"][0]["rounding_error_nonfinite"] == "nan"
    assert text.endswith("}\n")
