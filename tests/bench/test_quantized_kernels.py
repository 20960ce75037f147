"""bench notes the quantized kernels onnxruntime formed in each model (issue 24)."""

from __future__ import annotations

import json

import bnfold
from bnfold.bench.kernels import kernel_notes
from bnfold.storage.load import load_model
from tests.builders.bench_models import QUICK, fast_model
from tests.builders.qdq_judge import QdqConvBN


def test_the_fold_lets_onnxruntime_form_qlinearconv() -> None:
    model = QdqConvBN()
    found, notes = kernel_notes(
        load_model(model.original(), role="original"),
        load_model(model.folded(), role="candidate"),
        ["disable", "all"],
    )
    assert found["original"]["disable"] == {} and found["candidate"]["disable"] == {}
    # The BN between the QDQ Conv and its Q blocks the fusion; folded, the Conv fuses.
    candidate_all = found["candidate"]["all"]
    assert isinstance(candidate_all, dict) and candidate_all.get("QLinearConv", 0) >= 1
    original_all = found["original"]["all"]
    assert isinstance(original_all, dict)
    assert original_all.get("QLinearConv", 0) < candidate_all["QLinearConv"]
    assert any(
        "QLinearConv x" in note and note.startswith("quantized kernels at all") for note in notes
    )


def test_bench_report_carries_the_kernels() -> None:
    model = QdqConvBN()
    report = bnfold.bench(model.original(), model.folded(), providers="cpu", levels="all", **QUICK)
    data = json.loads(report.to_json())
    assert data["quantized_kernels"]["candidate"]["all"]["QLinearConv"] >= 1
    assert any("quantized kernels at all" in note for note in data["notes"])
    assert "quantized kernels at all" in report.to_markdown()


def test_float_models_get_no_kernel_note() -> None:
    report = bnfold.bench(fast_model(), fast_model(), providers="cpu", levels="disable", **QUICK)
    assert report.quantized_kernels == {}
    assert not any("quantized kernels" in note for note in report.notes)
