"""The weight-range report of the quantize and npu profiles (issue 25): the statistics, the
axis of each layer's output channels, and the report's JSON, Markdown and terminal forms."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from rich.console import Console

import bnfold
from bnfold.engine.weight_ranges import output_axis
from bnfold.engine.weight_stats import by_channel, channel_stats
from tests.builders.conv_bn import conv_bn_model
from tests.builders.qdq import qdq_conv_model
from tests.targets.graphs import conv_relu_bn_stack, dense_relu_bn, residual_block


def test_per_tensor_error_grows_where_a_channel_shrinks() -> None:
    """Two channels of one range; the fold scales channel 1 by 1/20: under one Δ for the
    tensor it keeps ~6 of 127 steps, under its own Δ_c all of them."""
    rng = np.random.default_rng(0)
    weight = rng.uniform(-1, 1, (2, 64))
    weight[:, 0] = 1.0  # both channels reach 1: the same range
    before = channel_stats(weight)
    after = channel_stats(weight * np.array([[1.0], [0.05]]))
    assert before.per_tensor_error == pytest.approx(before.per_channel_error)
    assert after.per_tensor_error[1] > 10 * before.per_tensor_error[1]
    assert after.per_tensor_error[0] == pytest.approx(before.per_tensor_error[0])
    assert after.per_channel_error == pytest.approx(before.per_channel_error, rel=1e-3)
    assert after.channel_max_abs == pytest.approx([1.0, 0.05])
    assert (after.max_abs, before.max_abs) == (1.0, 1.0)


def test_int8_error_is_zero_for_values_on_the_grid() -> None:
    weight = np.array([[127.0, -64.0, 0.0], [0.0, 0.0, 0.0]])
    stats = channel_stats(weight)
    assert stats.per_tensor_error == [0.0, 0.0] and stats.per_channel_error == [0.0, 0.0]
    assert stats.channel_median_abs == [64.0, 0.0]


def test_grouped_conv_transpose_channels() -> None:
    """[C_in, C_out/g, k] with g = 2: output channel g·(C_out/g) + j."""
    weight = np.arange(4 * 3 * 1).reshape(4, 3, 1)  # C_in 4, C_out 6, group 2
    rows = by_channel(weight, 1, group=2)
    assert rows.shape == (6, 2)
    assert rows[0].tolist() == [0, 3] and rows[3].tolist() == [6, 9]


@pytest.mark.parametrize(
    ("op", "slot", "attrs", "axis"),
    [
        ("Conv", 1, {}, 0),
        ("ConvTranspose", 1, {}, 1),
        ("Gemm", 1, {"transB": 1}, 0),
        ("Gemm", 1, {}, 1),
        ("MatMul", 1, {}, -1),
        ("MatMul", 0, {}, -2),
        ("Conv", 2, {}, None),
    ],
)
def test_output_axis(op: str, slot: int, attrs: dict[str, int], axis: int | None) -> None:
    node = helper.make_node(op, ["a", "b", "c"], ["y"], **attrs)
    assert output_axis(node, slot) == axis


def test_quantize_reports_each_fold_into_a_weight() -> None:
    report = bnfold.optimize(residual_block(), target="quantize").report
    ranges = {fold.bn: fold.weight_ranges for fold in report.folds}
    assert {bn: [r.weight for r in found] for bn, found in ranges.items()} == {
        "stem_bn": ["stem_W"],
        "bn1": ["conv1_W"],
        "bn2": ["conv2_W"],
    }
    change = ranges["stem_bn"][0]
    assert change.axis == 0 and len(change.before.channel_max_abs) == 8
    worst = change.worst_channels()
    errors = change.after.per_tensor_error
    assert errors[worst[0]] == max(errors)


def test_a_consumer_fold_reports_the_output_channels_of_its_layer() -> None:
    """BN → MatMul scales W2's rows (input channels): its 4 output columns are reported."""
    (fold,) = bnfold.optimize(dense_relu_bn(), target="npu").report.folds
    assert fold.pattern == "bn-matmul"
    (change,) = fold.weight_ranges
    assert (change.layer, change.weight, change.axis) == ("dense2", "W2", 1)
    assert len(change.after.channel_max_abs) == 4


def test_default_reports_no_ranges_and_keeps_its_json() -> None:
    report = bnfold.optimize(residual_block(), target="default").report
    assert all("weight_ranges" not in fold for fold in report.to_dict()["folds"])


def test_a_lowering_has_no_weight_to_report() -> None:
    report = bnfold.optimize(conv_relu_bn_stack(), target="npu", disable=["conv-bn-split"])
    assert {fold.pattern for fold in report.report.folds} == {"lower-standalone"}
    assert all(not fold.weight_ranges for fold in report.report.folds)


def test_json_markdown_and_terminal_show_the_ranges() -> None:
    report = bnfold.optimize(conv_relu_bn_stack(), target="quantize").report
    folds = json.loads(report.to_json())["folds"]
    first = folds[0]["weight_ranges"][0]
    assert first["weight"] == "conv0_W" and len(first["after"]["per_tensor_error"]) == 8
    assert set(first["before"]) == {
        "max_abs",
        "median_abs",
        "channel_max_abs",
        "channel_median_abs",
        "per_tensor_error",
        "per_channel_error",
    }
    markdown = report.to_markdown()
    assert "Weight ranges (--target quantize)" in markdown
    header = "| node | weight | max\\|w\\| | median\\|w\\| | per-tensor | per-channel |"
    assert header in markdown  # "|" escaped: one cell each
    change = report.folds[0].weight_ranges[0]
    assert f"| bn0 | conv0_W | {change.range_text()} | {change.median_text()} |" in markdown
    out = io.StringIO()
    report.render(Console(file=out, width=80))
    terminal = out.getvalue().splitlines()
    assert max(len(line) for line in terminal) <= 80
    (row,) = [line for line in terminal if line.startswith("bn0 ") and "conv0_W" in line]
    assert f" {change.worst_channels()[0]}: " in row  # the worst channel, on the fold's row


def test_a_quantized_layer_has_no_float_weight_to_report() -> None:
    """A QDQ layer's weight is DequantizeLinear of integers: its fold rewrites the scale."""
    (fold,) = bnfold.optimize(qdq_conv_model(), target="quantize").report.folds
    assert fold.pattern == "qdq-conv-bn" and fold.weight_ranges == []


def test_a_layer_without_bias_reports_its_weight_only() -> None:
    """The fold adds the Conv's bias input; only the weight has output channels to report."""
    (fold,) = bnfold.optimize(conv_bn_model(bias=False), target="quantize").report.folds
    assert [change.weight for change in fold.weight_ranges] == ["W"]


def test_a_weight_left_in_its_file_reports_what_memory_would(tmp_path: Path) -> None:
    """A ≥ 1 MiB weight read from a file is folded as a recipe (``storage.recipes``): its
    ranges are those of the same fold computed in memory."""
    model = conv_relu_bn_stack(layers=2, channels=256)  # conv1_W: 256·256·9 floats, 2.4 MB
    source = tmp_path / "big.onnx"
    onnx.save(model, source)
    from_file = bnfold.optimize(source, target="quantize").report.folds[1].weight_ranges
    in_memory = bnfold.optimize(model, target="quantize").report.folds[1].weight_ranges
    assert [change.weight for change in from_file] == ["conv1_W"]
    assert from_file == in_memory
