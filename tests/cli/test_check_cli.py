"""``bnfold check`` fails on what a BatchNormalization left behind, and counts by kind.

Exit 1 for BatchNormalization nodes and BN-equivalent Mul/Add chains (a per-channel scale);
a foldable bias Add is listed as optional and does not fail. Counts name their kind in the
table, the message and the JSON, and never count a chain as a BatchNormalization.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import helper

import bnfold
from bnfold.cli import main
from tests.builders.graphs import make_model, random_bn_params, tensor

RNG = np.random.default_rng(0)


def _vector(channels: int = 4) -> np.ndarray:
    return RNG.standard_normal([1, channels, 1, 1]).astype(np.float32)


def _weight(c_in: int = 4) -> np.ndarray:
    return RNG.standard_normal([4, c_in, 1, 1]).astype(np.float32)


def bias_add_only() -> onnx.ModelProto:
    """Conv without bias, then a per-channel Add: a foldable shift, no BatchNormalization."""
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
        helper.make_node("Add", ["c", "t"], ["y"], name="bias_add"),
    ]
    return make_model(
        nodes,
        [tensor("x", [1, 3, 8, 8])],
        [tensor("y", [1, 4, 8, 8])],
        [_weight(3), _vector()],
        names=["W", "t"],
    )


def mixed() -> onnx.ModelProto:
    """Two BatchNormalization, one BN written as Mul+Add (tf2onnx), one bias Add."""
    names, values, nodes = [], [], []
    data = "x"
    for index, tail in enumerate(["bn", "bn", "mul-add", "add"]):
        conv = f"conv{index}"
        names.append(f"W{index}")
        values.append(_weight(3 if index == 0 else 4))
        nodes.append(helper.make_node("Conv", [data, f"W{index}"], [conv], name=conv))
        if tail == "bn":
            params = [f"{p}{index}" for p in "gbmv"]
            names += params
            values += random_bn_params(RNG, 4)
            nodes.append(
                helper.make_node(
                    "BatchNormalization", [conv, *params], [f"z{index}"], name=f"bn{index}"
                )
            )
        elif tail == "mul-add":
            names += [f"s{index}", f"t{index}"]
            values += [_vector(), _vector()]
            nodes.append(helper.make_node("Mul", [conv, f"s{index}"], [f"m{index}"], name="mul"))
            nodes.append(
                helper.make_node("Add", [f"m{index}", f"t{index}"], [f"z{index}"], name="add")
            )
        else:
            names.append(f"t{index}")
            values.append(_vector())
            nodes.append(helper.make_node("Add", [conv, f"t{index}"], [f"z{index}"], name="bias"))
        data = f"z{index}"
        nodes.append(helper.make_node("Relu", [data], [f"r{index}"], name=f"relu{index}"))
        data = f"r{index}"
    return make_model(
        nodes, [tensor("x", [1, 3, 8, 8])], [tensor(data, [1, 4, 8, 8])], values, names=names
    )


def _check(tmp_path: Path, model: onnx.ModelProto) -> tuple[int, str, dict]:
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    report = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["check", str(path), "--report", str(report)])
    return result.exit_code, result.output, json.loads(report.read_text())


def test_a_model_without_batchnorm_passes_and_lists_the_bias_add_as_optional(
    tmp_path: Path,
) -> None:
    code, output, data = _check(tmp_path, bias_add_only())
    assert code == 0, output
    assert "1 optional bias Add" in output and "Foldable: 1 bias Add" in output
    assert data["folds_by_kind"] == {"BatchNormalization": 0, "Mul/Add chain": 0, "bias Add": 1}
    assert data["folds"][0]["kind"] == "Add"


def test_batchnorm_and_mul_add_chains_fail_with_exact_counts(tmp_path: Path) -> None:
    code, output, data = _check(tmp_path, mixed())
    assert code == 1, output
    assert "error: 2 BatchNormalization, 1 Mul/Add chain can be folded" in output
    assert "1 optional bias Add" in output
    assert "Foldable: 2 BatchNormalization, 1 Mul/Add chain, 1 bias Add" in output
    assert data["folds_by_kind"] == {"BatchNormalization": 2, "Mul/Add chain": 1, "bias Add": 1}
    assert data["counts"]["batchnorm_before"] == 2  # BatchNormalization nodes, not folds
    report = bnfold.check(tmp_path / "m.onnx")
    assert [f.bn for f in report.must_fold] == ["bn0", "bn1", "add"]
    assert [f.bn for f in report.optional_folds] == ["bias"]


def test_a_batchnorm_written_as_mul_add_alone_fails(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
        helper.make_node("Mul", ["c", "s"], ["m"], name="bn_mul"),
        helper.make_node("Add", ["m", "t"], ["y"], name="bn_add"),
    ]
    model = make_model(
        nodes,
        [tensor("x", [1, 3, 8, 8])],
        [tensor("y", [1, 4, 8, 8])],
        [_weight(3), _vector(), _vector()],
        names=["W", "s", "t"],
    )
    code, output, data = _check(tmp_path, model)
    assert code == 1 and "error: 1 Mul/Add chain can be folded" in output
    assert data["counts"]["batchnorm_before"] == 0
    assert data["folds"][0]["kind"] == "Mul+Add"


def _two(tmp_path: Path) -> tuple[Path, Path]:
    passing, failing = tmp_path / "clean.onnx", tmp_path / "dirty.onnx"
    onnx.save(bias_add_only(), passing)
    onnx.save(mixed(), failing)
    return passing, failing


def test_check_speaks_as_a_check_not_as_optimize(tmp_path: Path) -> None:
    _, failing = _two(tmp_path)
    markdown = tmp_path / "r.md"
    args = ["check", str(failing), "--markdown", str(markdown)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    out = result.output
    assert "Folded:" not in out and "→" not in out  # optimize's words
    line = "2 foldable BatchNormalization and 1 foldable Mul/Add chain remain"
    assert f"FAIL: {failing}: {line}" in out
    text = markdown.read_text()
    assert text.startswith(f"### bnfold check: `{failing}` failed")
    assert line in text and "bnfold optimize" not in text and "Folded:" not in text


def test_a_passing_check_names_its_file_and_says_nothing_is_left(tmp_path: Path) -> None:
    passing, _ = _two(tmp_path)
    report = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["check", str(passing), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert f"ok: {passing}: no foldable BatchNormalization left" in result.output
    data = json.loads(report.read_text())
    assert data["passed"] is True and data["exit_code"] == 0
    assert data["remaining"] == {"BatchNormalization": 0, "Mul/Add chain": 0}
    assert data["remaining_total"] == 0


def test_the_json_says_passed_exit_code_and_what_remains(tmp_path: Path) -> None:
    code, _, data = _check(tmp_path, mixed())
    assert code == 1
    assert data["passed"] is False and data["exit_code"] == 1
    assert data["remaining"] == {"BatchNormalization": 2, "Mul/Add chain": 1}
    assert data["remaining_total"] == 3


def test_many_models_one_line_each_and_exit_1_if_any_fails(tmp_path: Path) -> None:
    passing, failing = _two(tmp_path)
    report = tmp_path / "r.json"
    args = ["check", str(passing), str(failing), "--report", str(report), "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"ok: {passing}: no foldable BatchNormalization left")
    assert lines[1].startswith(f"FAIL: {failing}: 2 foldable BatchNormalization")
    assert f"error: {failing}: 2 BatchNormalization, 1 Mul/Add chain can be folded" in lines[2]
    data = json.loads(report.read_text())
    assert data["passed"] is False and data["exit_code"] == 1
    assert [m["model"] for m in data["models"]] == [str(passing), str(failing)]
    assert [m["passed"] for m in data["models"]] == [True, False]

    both_pass = CliRunner().invoke(main, ["check", str(passing), str(passing), "-q"])
    assert both_pass.exit_code == 0
    assert both_pass.output.count(f"ok: {passing}:") == 2


def test_several_failing_models_are_named_in_the_error(tmp_path: Path) -> None:
    _, failing = _two(tmp_path)
    other = tmp_path / "other.onnx"
    onnx.save(mixed(), other)
    result = CliRunner().invoke(main, ["check", str(failing), str(other), "-q"])
    assert result.exit_code == 1
    assert f"error: 2 of 2 models have foldable BatchNormalization: {failing}, {other}" in (
        result.output
    )


def test_the_pre_commit_hook_passes_every_file_to_one_check() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    hook = yaml.safe_load((root / ".pre-commit-hooks.yaml").read_text())[0]
    assert hook["entry"] == "bnfold check"
    assert hook.get("pass_filenames", True)
