"""Issue 22: scope identity, attribute references and per-call-site folding of functions.

Every graph is written fresh (``tests.builders.edges.functions``): each must pass the
fuzzer's property (exact or refused with a reason, valid, idempotent, a true report) and
run the stated number of BNs per inference afterwards.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

import bnfold
from bnfold.engine.functions import batchnorms_per_call
from bnfold.engine.graph import AttributeReference, attribute, float_attribute
from bnfold.engine.shapes import MAIN_SCOPE, scoped_graphs
from tests.builders.edges import functions as edge_functions
from tests.builders.edges.build import FOLDED, EdgeCase
from tests.builders.fuzz.checks import check_optimize_is_safe

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("build", edge_functions.CASES, ids=lambda build: build.__name__)
def test_function_edge_graph_is_exact_and_folds_per_call_site(
    build: Callable[[], EdgeCase],
) -> None:
    case = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = check_optimize_is_safe(case.model, case.feeds, case.dtype)
    assert result is not None
    folded = {fold.bn for fold in result.report.folds}
    for label, allowed in case.expect.items():
        assert label in folded and FOLDED in allowed
    assert case.extra is not None
    case.extra(case.model, result)


def test_overloads_fold_with_their_own_constants() -> None:
    case = edge_functions.overloads_share_a_name()
    result = bnfold.optimize(case.model)
    assert sorted(f.bn for f in result.report.folds) == ["local.Block:a/bn", "local.Block:b/bn"]
    assert not result.report.functions  # folded in each body: nothing to inline


def test_unnamed_if_outputs_get_their_own_scope() -> None:
    case = edge_functions.unnamed_if_outputs()
    keys = [path for _, path in scoped_graphs(case.model.graph, MAIN_SCOPE)]
    assert len(keys) == len(set(keys)) == 4
    result = bnfold.optimize(case.model)
    assert len(result.report.folds) == 2
    assert batchnorms_per_call(result.model) == 0
    # onnxruntime does not run an If with an unnamed output: onnx's evaluator judges.
    for feeds in case.feeds:
        want = list(ReferenceEvaluator(case.model).run(None, feeds))
        got = list(ReferenceEvaluator(result.model).run(None, feeds))
        np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)


def test_the_attribute_accessor_refuses_a_reference_instead_of_a_default() -> None:
    node = helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], name="bn")
    ref = helper.make_attribute_ref("epsilon", onnx.AttributeProto.FLOAT)
    ref.ref_attr_name = "eps"
    node.attribute.append(ref)
    with pytest.raises(AttributeReference, match="'eps'"):
        float_attribute(node, "epsilon", 1e-5)
    assert attribute(node, "momentum", 0.9) == 0.9


def _single_call(*, gamma_from_input: bool, eps_ref: bool) -> onnx.ModelProto:
    """One call of ``local.BN(x, g)``: γ bound to a graph input, or ε taken from the caller."""
    rng = np.random.default_rng(7)
    consts = [
        helper.make_node("Constant", [], [n], value=onnx.numpy_helper.from_array(v, n))
        for n, v in (
            ("W", rng.standard_normal([4, 4]).astype(np.float32)),
            ("b", rng.standard_normal(4).astype(np.float32)),
            ("m", rng.standard_normal(4).astype(np.float32)),
            ("v", rng.uniform(0.5, 2, 4).astype(np.float32)),
        )
    ]
    bn = helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], name="bn")
    if eps_ref:
        ref = helper.make_attribute_ref("epsilon", onnx.AttributeProto.FLOAT)
        ref.ref_attr_name = "eps"
        bn.attribute.append(ref)
    body = [*consts, helper.make_node("MatMul", ["x", "W"], ["c"], name="mm"), bn]
    function = helper.make_function(
        "local",
        "BN",
        ["x", "g"],
        ["y"],
        body,
        [helper.make_opsetid("", 17)],
        ["eps"] if eps_ref else [],
    )
    call = helper.make_node("BN", ["x", "g"], ["y"], name="call", domain="local")
    if eps_ref:
        call.attribute.append(helper.make_attribute("eps", 0.25))
    inputs = [helper.make_tensor_value_info("x", 1, [2, 4])]
    inits = []
    if gamma_from_input:
        inputs.append(helper.make_tensor_value_info("g", 1, [4]))
    else:
        inits.append(onnx.numpy_helper.from_array(rng.uniform(0.5, 2, 4).astype(np.float32), "g"))
    graph = helper.make_graph(
        [call], "g", inputs, [helper.make_tensor_value_info("y", 1, [2, 4])], inits
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
        functions=[function],
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def test_a_function_input_bound_to_a_graph_input_is_refused_with_a_true_reason() -> None:
    model = _single_call(gamma_from_input=True, eps_ref=False)
    result = bnfold.optimize(model)
    assert [(s.bn, s.reason) for s in result.report.skipped] == [
        ("local.BN/bn", "param-is-function-input")
    ]
    assert "input of function local.BN" in result.report.skipped[0].detail
    assert "graph input" not in result.report.skipped[0].detail
    assert not result.report.functions
    assert result.model.SerializeToString() == model.SerializeToString()


def test_an_attribute_reference_folds_at_its_call_site() -> None:
    model = _single_call(gamma_from_input=False, eps_ref=True)
    feeds = {"x": np.random.default_rng(1).standard_normal([2, 4]).astype(np.float32)}
    result = check_optimize_is_safe(model, feeds, np.dtype(np.float32))
    assert result is not None and len(result.report.folds) == 1
    assert [a.action for a in result.report.functions] == ["inlined"]
    data = json.loads(result.report.to_json())
    assert data["functions"][0]["function"] == "local.BN"


def test_an_attribute_reference_that_cannot_fold_anywhere_is_refused_not_crashed() -> None:
    model = _single_call(gamma_from_input=True, eps_ref=True)
    result = bnfold.optimize(model)
    assert [s.reason for s in result.report.skipped] in (
        ["attribute-reference"],
        ["param-is-function-input"],
    )
    assert result.model.SerializeToString() == model.SerializeToString()


def test_every_new_reason_code_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    for code in ("param-is-function-input", "attribute-reference"):
        assert f"| `{code}` |" in text
