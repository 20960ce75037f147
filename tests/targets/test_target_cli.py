"""``bnfold optimize --target quantize`` and ``bnfold check --target npu`` end to end through
the CLI (issue 25): the written model, the exit codes, the reasons and the reports."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from click.testing import CliRunner

from bnfold.cli import main
from tests.builders.graphs import assert_equivalent, batchnorm_count
from tests.targets.graphs import bn_of_unknown_rank, conv_relu_bn_stack, negative_scale_after_relu


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, path)
    return path


def test_optimize_target_quantize(tmp_path: Path) -> None:
    source = _save(conv_relu_bn_stack(), tmp_path / "stack.onnx")
    out, report = tmp_path / "out.onnx", tmp_path / "report.json"
    args = [
        "optimize",
        str(source),
        "-o",
        str(out),
        "--target",
        "quantize",
        "--report",
        str(report),
    ]
    result = CliRunner().invoke(main, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    folded = onnx.load(out)
    assert batchnorm_count(folded) == 0
    assert_equivalent(onnx.load(source), folded)
    assert "Weight ranges (--target quantize)" in result.output
    assert "per-tensor" in result.output and "conv0_W" in result.output
    data = json.loads(report.read_text())
    assert data["target"] == "quantize"
    assert [fold["pattern"] for fold in data["folds"]] == ["conv-bn-split"] * 4
    assert all(fold["weight_ranges"] for fold in data["folds"])


def test_optimize_default_keeps_what_it_kept(tmp_path: Path) -> None:
    source = _save(conv_relu_bn_stack(), tmp_path / "stack.onnx")
    out = tmp_path / "out.onnx"
    result = CliRunner().invoke(main, ["optimize", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert batchnorm_count(onnx.load(out)) == 4
    assert "Weight ranges" not in result.output


def test_check_target_npu_fails_where_default_passes(tmp_path: Path) -> None:
    source = _save(conv_relu_bn_stack(), tmp_path / "stack.onnx")
    default = CliRunner().invoke(main, ["check", str(source), "-q"])
    assert default.exit_code == 0, default.output
    report = tmp_path / "check.json"
    args = ["check", str(source), "--target", "npu", "-q", "--report", str(report)]
    npu = CliRunner().invoke(main, args)
    assert npu.exit_code == 1
    assert "--target npu rejects: conv-bn-split ×4" in npu.output
    assert "run `bnfold optimize --target npu " in npu.output
    data = json.loads(report.read_text())
    assert (data["passed"], data["target"], data["remaining_total"]) == (False, "npu", 4)


def test_check_target_npu_passes_what_npu_optimize_wrote(tmp_path: Path) -> None:
    source = _save(negative_scale_after_relu(), tmp_path / "neg.onnx")
    out = tmp_path / "neg.npu.onnx"
    written = CliRunner().invoke(main, ["optimize", str(source), "-o", str(out), "--target", "npu"])
    assert written.exit_code == 0, written.output
    before = CliRunner().invoke(main, ["check", str(source), "--target", "npu", "-q"])
    assert before.exit_code == 1 and "rejects: lower-standalone" in before.output
    after = CliRunner().invoke(main, ["check", str(out), "--target", "npu", "-q"])
    assert after.exit_code == 0, after.output


def test_check_target_fails_on_a_kept_batchnorm_with_its_reason(tmp_path: Path) -> None:
    """Nothing folds and nothing lowers it: default passes (kept with a reason), npu fails."""
    source = _save(bn_of_unknown_rank(), tmp_path / "unknown.onnx")
    assert CliRunner().invoke(main, ["check", str(source), "-q"]).exit_code == 0
    report = tmp_path / "check.json"
    args = ["check", str(source), "--target", "npu", "-q", "--report", str(report)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "1 BatchNormalization kept, which --target npu rejects (not-lowerable)" in result.output
    assert [kept["reason"] for kept in json.loads(report.read_text())["kept_rejected"]] == [
        "not-lowerable"
    ]
