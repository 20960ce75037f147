"""Issue 22: every name and reason code in a report is true (the edge cases of each class are
in ``tests/builders/edges/true_reports.py``, run by ``test_edge_graphs.py``; the fuzzer's
property checks names against the written and the input model)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import bnfold
from tests.builders.edges.build import array, bn_node, bn_params, build_model, value, weights
from tests.builders.fuzz.checks import assert_report_names_exist
from tests.builders.report_truth import assert_reports_true_of_input

ROOT = Path(__file__).parents[2]


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments (a code kept in a constant)."""
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _emitted_codes() -> set[str]:
    """Every reason code a ``Skip(...)`` in bnfold/ spells out, and every code a
    ``SkippedBatchNorm(label, CODE, ...)`` is built with (a literal or a module constant, such
    as the profiles' ``NOT_LOWERABLE``); any other code must pass an existing refusal's on
    (``x.reason``)."""
    trees = {path: ast.parse(path.read_text()) for path in ROOT.joinpath("bnfold").rglob("*.py")}
    constants = {
        name: text for tree in trees.values() for name, text in _string_constants(tree).items()
    }
    codes: set[str] = set()
    for path, tree in trees.items():
        for node in ast.walk(tree):
            name = getattr(node.func, "id", None) if isinstance(node, ast.Call) else None
            if name == "SkippedBatchNorm" and len(node.args) > 1:
                code = node.args[1]
            elif name == "Skip":
                code = (
                    node.args[0]
                    if node.args
                    else next(k.value for k in node.keywords if k.arg == "reason")
                )
            else:
                continue
            if isinstance(code, ast.Constant) and isinstance(code.value, str):
                codes.add(code.value)
            elif isinstance(code, ast.Name) and code.id in constants:
                codes.add(constants[code.id])
            else:
                assert isinstance(code, ast.Attribute) and code.attr == "reason", (
                    f"{path.name}:{node.lineno}: a reason code that is neither a literal nor "
                    f"another refusal's: {ast.unparse(code)}"
                )
    return codes


def _readme_codes() -> set[str]:
    text = ROOT.joinpath("README.md").read_text()
    section = text.split("### Why a BatchNormalization is kept (reason codes)", 1)[1]
    section = section.split("\n### ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9-]+)` \|", section, re.MULTILINE))


def test_the_readme_reason_table_lists_exactly_the_codes_the_engine_emits() -> None:
    emitted, listed = _emitted_codes(), _readme_codes()
    assert "training-info" in emitted and "no-pattern" in emitted  # the collection works
    assert not emitted - listed, f"codes without a README row: {sorted(emitted - listed)}"
    assert not listed - emitted, f"README rows no code emits: {sorted(listed - emitted)}"


def _conv_bn_relu() -> onnx.ModelProto:
    rng = np.random.default_rng(230)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[1, 1], name="conv"),
        bn_node("c", "t", "a", name="bn"),
        helper.make_node("Relu", ["t"], ["y"], name="relu"),
    ]
    inits = [array(weights(rng, [4, 3, 1, 1]), "W"), *bn_params(rng, 4, prefix="a")]
    return build_model(nodes, [value("x", [1, 3, 3, 3])], ["y"], inits)


@pytest.mark.parametrize("disabled", [["conv-bn"], ["conv-bn", "conv-bn-split", "bn-conv"]])
def test_a_bn_only_a_disabled_pattern_folds_reports_no_pattern(disabled: list[str]) -> None:
    result = bnfold.optimize(_conv_bn_relu(), disable=disabled)
    (kept,) = result.report.skipped
    assert kept.reason == "no-pattern", kept
    assert kept.detail.startswith("conv-bn would fold it into conv, but is disabled")
    assert "read by Relu relu" in kept.detail  # the other side's reason follows


def test_a_disabled_pattern_another_side_does_not_need_changes_nothing() -> None:
    result = bnfold.optimize(_conv_bn_relu(), disable=["bn-conv"])
    assert [(f.bn, f.into, f.pattern) for f in result.report.folds] == [("bn", "conv", "conv-bn")]


def test_a_bn_after_a_spatial_off_bn_is_refused_for_itself() -> None:
    rng = np.random.default_rng(231)
    nodes = [
        helper.make_node(
            "BatchNormalization", ["x", "ag", "ab", "am", "av"], ["t"], name="bn1", spatial=0
        ),
        bn_node("t", "u", "b", name="bn2"),
        helper.make_node("Relu", ["u"], ["y"]),
    ]
    inits = [*bn_params(rng, 4, prefix="a"), *bn_params(rng, 4, prefix="b")]
    model = build_model(nodes, [value("x", [1, 4, 3, 3])], ["y"], inits, opset=7)
    result = bnfold.optimize(model)
    kept = {s.bn: (s.reason, s.detail) for s in result.report.skipped}
    assert kept["bn1"][0] == "spatial-off"
    assert kept["bn2"][0] == "no-linear-producer"
    assert "BatchNormalization bn1, which takes no merge (spatial-off" in kept["bn2"][1]
    assert_reports_true_of_input(result.report, model)


@pytest.mark.parametrize("named", [True, False])
@pytest.mark.parametrize("lower", [False, True])
def test_merges_name_where_they_finally_went(named: bool, lower: bool) -> None:
    """``x → bn1 → bn2 → bn3 → Relu``: bn2 and bn3 merge into bn1, which stays or, with
    --lower-standalone, becomes Mul + Add."""
    rng = np.random.default_rng(232)
    names = ["bn1", "bn2", "bn3"] if named else ["", "", ""]
    nodes = [
        bn_node("x", "t1", "a", name=names[0]),
        bn_node("t1", "t2", "b", name=names[1]),
        bn_node("t2", "t3", "c", name=names[2]),
        helper.make_node("Relu", ["t3"], ["y"]),
    ]
    inits = [*(t for p in "abc" for t in bn_params(rng, 4, prefix=p))]
    model = build_model(nodes, [value("x", [1, 4, 3])], ["y"], inits)
    result = bnfold.optimize(model, lower_standalone=lower)
    labels = [n.name or f"<BatchNormalization:{n.output[0]}>" for n in nodes[:3]]
    merges = [(f.bn, f.into, f.via) for f in result.report.folds if f.pattern == "bn-affine"]
    if lower:
        lowered = [f for f in result.report.folds if f.pattern == "lower-standalone"]
        assert [f.bn for f in lowered] == [labels[0]]  # named as in the input
        assert merges == [(label, lowered[0].into, [labels[0]]) for label in labels[1:]]
    else:
        (kept,) = result.report.skipped
        assert merges == [(label, kept.bn, []) for label in labels[1:]]
    assert_report_names_exist(result.report, result.model)
    assert_reports_true_of_input(result.report, model)
    data = result.report.to_dict()
    assert all("merged_label" not in fold for fold in data["folds"])
    assert all(("via" in fold) == lower for fold in data["folds"] if fold["pattern"] == "bn-affine")
