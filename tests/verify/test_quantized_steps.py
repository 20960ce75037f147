"""Quantized outputs and sites judged in quantization steps (issue 24, the judge's side)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import bnfold
from bnfold.verify import VerifyReport
from bnfold.verify.quantized import (
    MAX_STEPS,
    SHARE_BOUND,
    QuantGrid,
    level_effect,
    quant_grids,
)
from tests.builders.qdq_judge import QdqConvBN

LEVELS = "disable,all"


def _verify(candidate: onnx.ModelProto, runs: int = 3) -> VerifyReport:
    model = QdqConvBN()
    return bnfold.verify(
        model.original(),
        candidate,
        providers="cpu",
        levels=LEVELS,
        runs=runs,
        ranges={"x": (-2.0, 2.0)},
    )


def test_exact_quantized_fold_passes_at_every_level() -> None:
    report = _verify(QdqConvBN().folded())
    assert report.passed, report.summary_line()
    assert [r.level for r in report.ran] == ["disable", "all"]
    for result in report.ran:
        for name in ("q_out", "f_out"):
            steps = result.outputs[name].steps
            assert steps is not None
            assert steps.max_steps <= MAX_STEPS and steps.share <= SHARE_BOUND
        assert result.sites["bn1"].steps is not None
    # The int8 output has a known scale: judged in steps, not weak evidence.
    assert not report.weak_outputs


def test_corrupted_channel_scale_fails_at_its_site() -> None:
    report = _verify(QdqConvBN().corrupted(channel=2, factor=1.05))
    assert not report.passed
    assert [r.status for r in report.providers] == ["failed", "failed"]
    for result in report.providers:
        assert result.first_divergence == "bn1"
        assert "quantization steps" in (result.reason or "")
        q_out = result.outputs["q_out"].steps
        assert q_out is not None and q_out.max_steps > MAX_STEPS and q_out.share > SHARE_BOUND


def test_report_shows_steps_and_kernel_choice() -> None:
    report = _verify(QdqConvBN().folded(), runs=1)
    data = json.loads(report.to_json())
    quantized = data["quantized"]
    assert quantized["share_bound"] == SHARE_BOUND
    assert quantized["tensors"]["q_out"]["kind"] == "quantized"
    assert quantized["tensors"]["f_out"]["kind"] == "dequantized"
    assert quantized["tensors"]["bn1"]["kind"] == "before-quantize"
    assert set(quantized["kernel_choice"]) == {"all"}
    assert quantized["kernel_choice"]["all"]["q_out"]["total"] == 8 * 12 * 12
    cpu_all = next(p for p in data["providers"] if p["level"] == "all")
    assert cpu_all["outputs"]["q_out"]["steps"]["moved"] <= cpu_all["outputs"]["q_out"]["total"]
    markdown = report.to_markdown()
    assert "quantization steps" in markdown and "kernel choice at all" in markdown


def test_grids_per_channel_and_steps() -> None:
    model = QdqConvBN().original()
    grids = quant_grids(model, ["q_out", "f_out", "bn1", "x_dq"])
    assert set(grids) == {"q_out", "f_out", "bn1", "x_dq"}
    per_channel = QuantGrid(
        "t", "dequantized", "dq", np.array([0.5, 2.0]), np.zeros(2, np.int8), 1, "int8"
    )
    ref = np.zeros((1, 2, 2), np.float32)
    cand = np.array([[[0.5, 1.0], [2.0, 2.0]]], np.float32)
    assert per_channel.steps(ref, cand).tolist() == [[[1, 2], [1, 1]]]


def test_level_effect_counts_what_the_kernel_choice_moved() -> None:
    grid = QuantGrid("q", "quantized", "q", np.array([0.1]), np.zeros(1, np.int8), 1, "int8")
    before = [{"q": np.array([1, 2, 3, 4], np.int8)}]
    after = [{"q": np.array([1, 3, 3, 4], np.int8)}]
    effect = level_effect(before, after, {"q": grid})
    assert effect["q"].moved == 1 and effect["q"].max_steps == 1
    assert effect["q"].share == pytest.approx(0.25)
