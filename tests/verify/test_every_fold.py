"""Issue 23: a compared site for every fold, no false failure on an exact fold, inputs that
reach every path, and weak outputs that are never a pass.

Each model is folded by bnfold; the exact fold must pass with the default sites and with
``--sites all``, and a 1 % change of the slice the fold wrote must fail at its site.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest

import bnfold
from bnfold.runtime.generate import generate_inputs
from bnfold.runtime.inputs import input_specs
from bnfold.verify import verify
from bnfold.verify.sites import find_sites
from tests.builders import verify_models as vm
from tests.builders.corrupt import corrupt_layer

pytestmark = pytest.mark.usefixtures("cpu_only_default")

CASES: dict[str, tuple[Callable[[], onnx.ModelProto], str, str]] = {
    # name: (builder, the site, the fold's kind)
    "keras-dense-mul-add": (vm.keras_dense_mul_add, "bn_add", "Add+Mul+Add"),
    "keras-argmax": (lambda: vm.keras_dense_mul_add("argmax"), "bn_add", "Add+Mul+Add"),
    "keras-greater": (lambda: vm.keras_dense_mul_add("greater"), "bn_add", "Add+Mul+Add"),
    "torch-sub-mul-add": (vm.conv_sub_mul_add, "shifted", "Sub+Mul+Add"),
    "matmul-bias-consumer": (vm.bn_matmul_bias, "lin", "Mul+Add"),
    "maxpool-gemm-consumer": (vm.bn_maxpool_gemm, "logits", "BatchNormalization"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_exact_fold_passes_and_a_wrong_slice_fails_at_its_site(name: str) -> None:
    build, site, kind = CASES[name]
    original = build()
    folded = bnfold.optimize(original).model
    sites, _, _ = find_sites(original, folded, "folds")
    assert [(s.name, s.kind) for s in sites] == [(site, kind)]
    for mode in ("folds", "all"):
        exact = verify(original, folded, providers="cpu", levels="disable,all", sites=mode)
        assert exact.exit_code == 0, f"{mode}: {exact.summary_line()}"
    for channel in (0, 1):
        wrong = corrupt_layer(folded, site, channel=channel)
        report = verify(original, wrong, providers="cpu", save_failing=False)
        assert report.exit_code == 1, report.summary_line()
        assert report.providers[0].first_divergence == site, report.providers[0].reason
        assert "folded into" in (report.providers[0].reason or "")


def test_sites_all_leaves_out_what_the_fold_passed_through() -> None:
    """The consumer fold into the Gemm: MaxPool/Transpose/Reshape now read pre-BN values;
    the MatMul before the bias Add that took the shift no longer holds the original's value."""
    original = vm.bn_maxpool_gemm()
    every, _, _ = find_sites(original, bnfold.optimize(original).model, "all")
    assert {s.name for s in every} == {"logits"}
    original = vm.bn_matmul_bias()
    every, _, _ = find_sites(original, bnfold.optimize(original).model, "all")
    assert {s.name for s in every} == {"lin"}


def test_scalar_bool_takes_both_values_and_the_else_branch_is_checked() -> None:
    original, wrong = vm.if_scalar_bool(), vm.if_scalar_bool(else_scale=1.2)
    (spec,), _ = input_specs(_only_flag(original))
    assert [bool(generate_inputs([spec], 0, run)["flag"]) for run in range(3)] == [
        True,
        False,
        True,
    ]
    report = verify(original, wrong, providers="cpu", save_failing=False)
    assert report.runs == 2 and report.exit_code == 1, report.summary_line()
    assert report.providers[0].failing_run == 1
    exact = verify(original, original, providers="cpu")
    assert exact.passed
    assert any("then branch ran on 1, else branch on 1" in n for n in exact.notes), exact.notes
    assert exact.to_dict()["if_branches"] == [
        {"node": "<If:y>", "condition": "flag", "then_runs": 1, "else_runs": 1}
    ]


def _only_flag(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    kept = [vi for vi in copy.graph.input if vi.name == "flag"]
    del copy.graph.input[:]
    copy.graph.input.extend(kept)
    return copy


def test_integer_tensors_span_their_range() -> None:
    specs, _ = input_specs(vm.embedding(vocab=7), shapes={"ids": (2, 5)})
    values = generate_inputs(specs, 0)["ids"]
    assert values.min() == 0 and values.max() == 6


@pytest.mark.parametrize("head", ["argmax", "greater"])
def test_integer_and_bool_outputs_are_weak_and_never_pass_alone(head: str) -> None:
    original = vm.keras_dense_mul_add(head)
    folded = bnfold.optimize(original).model
    exact = verify(original, folded, providers="cpu")
    assert exact.passed  # the fold's site covers the weak label
    (weak,) = exact.weak_outputs
    assert weak.kind in ({"bool", "constant"} if head == "greater" else {"integer"})
    wrong = corrupt_layer(folded, "bn_add")
    blind = verify(original, wrong, providers="cpu", sites="none", save_failing=False)
    assert not blind.passed and blind.exit_code == 1
    assert blind.failed or blind.inconclusive
    assert blind.uncovered_outputs == ["y"] or blind.failed


def test_all_nan_output_is_weak_and_inconclusive_when_the_models_differ() -> None:
    report = verify(vm.all_nan(), vm.all_nan(offset=1.0), providers="cpu", save_failing=False)
    assert [w.kind for w in report.weak_outputs] == ["nonfinite"]
    assert report.inconclusive and report.exit_code == 1 and not report.passed
    assert "inconclusive" in report.summary_line() and "nonfinite" in report.summary_line()
    same = verify(vm.all_nan(), vm.all_nan(), providers="cpu")
    assert same.passed  # the same graph: nothing differs that a weak output could hide


def test_constant_over_inputs_is_weak() -> None:
    from bnfold.verify.evidence import weak_outputs

    runs = [{"y": np.array([1.0, 2.0], np.float32)} for _ in range(2)]
    sets = [{"x": np.array([i], np.float32)} for i in range(2)]
    weak = weak_outputs(vm.unary("Relu"), runs, None, sets)
    assert weak["y"].kind == "constant" and "same in all 2 input sets" in weak["y"].message
    assert weak_outputs(vm.unary("Relu"), runs, None, [sets[0], sets[0]]) == {}
