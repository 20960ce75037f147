"""Each profile on the graphs quantizers and NPU compilers stumble over (issue 25): what it
folds, lowers and keeps, checked numerically against the unoptimized original; every refusal
a profile adds or removes; same input, same bytes; folding twice is a no-op."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import bnfold
from bnfold.engine import lowering
from bnfold.engine.lowering import LOWERING_FORMS
from bnfold.engine.targets import DWCONV, MUL_ADD, TARGET_NAMES, profile
from bnfold.errors import UsageError
from tests.builders.graphs import assert_equivalent, batchnorm_count, make_model, op_types, tensor
from tests.targets.graphs import BUILT, bn_of_unknown_rank, conv_relu_bn_stack

# Every graph but the one of unknown rank (its Reshape needs a real shape as input).
NUMERIC = sorted(set(BUILT) - {"bn_of_unknown_rank"})
LOWERING = ("quantize", "npu")


def _fold(model: onnx.ModelProto, target: str) -> bnfold.OptimizeResult:
    return bnfold.optimize(model, target=target)


@pytest.mark.parametrize("target", TARGET_NAMES)
@pytest.mark.parametrize("name", NUMERIC)
def test_every_fold_computes_the_original(name: str, target: str) -> None:
    model = BUILT[name]()
    assert_equivalent(model, _fold(model, target).model)


@pytest.mark.parametrize("target", LOWERING)
@pytest.mark.parametrize("name", NUMERIC)
def test_no_batchnorm_is_left(name: str, target: str) -> None:
    result = _fold(BUILT[name](), target)
    assert batchnorm_count(result.model) == 0
    assert not result.report.skipped


@pytest.mark.parametrize("target", LOWERING)
def test_conv_relu_bn_is_split_not_kept(target: str) -> None:
    """The #9938 shape: each scale into its Conv, each shift one Add after the Relu."""
    result = _fold(conv_relu_bn_stack(), target)
    assert [fold.pattern for fold in result.report.folds] == ["conv-bn-split"] * 4
    assert op_types(result.model) == ["Conv", "Relu", "Add"] * 4


def test_default_keeps_conv_relu_bn_as_slower() -> None:
    """The refusal quantize and npu remove: kept as BN by default."""
    report = _fold(conv_relu_bn_stack(), "default").report
    assert [skip.reason for skip in report.skipped] == ["slower-at-level-all"] * 4
    assert not report.folds


@pytest.mark.parametrize("target", LOWERING)
def test_mul_add_after_conv_and_relu_is_split(target: str) -> None:
    """A BN exported as Mul + Add after Conv → Relu: no Mul left after the linear layer."""
    result = _fold(BUILT["conv_relu_mul_add"](), target)
    assert [fold.pattern for fold in result.report.folds] == ["conv-bn-split"]
    assert op_types(result.model) == ["Conv", "Relu", "Add"]
    default = _fold(BUILT["conv_relu_mul_add"](), "default").report
    assert [skip.reason for skip in default.skipped] == ["slower-at-level-all"]


@pytest.mark.parametrize("target", TARGET_NAMES)
@pytest.mark.parametrize("name", ["dense_relu_bn_tail", "dense_relu_mul_add_tail"])
def test_dense_relu_bn_splits_in_every_profile(name: str, target: str) -> None:
    """On a 2-D Dense output the kept shift Add costs nothing: every profile splits."""
    result = _fold(BUILT[name](), target)
    assert [fold.pattern for fold in result.report.folds] == ["matmul-bn-split"]
    assert "Mul" not in op_types(result.model)


@pytest.mark.parametrize("target", LOWERING)
@pytest.mark.parametrize("name", ["negative_scale_after_relu", "bn_on_input"])
def test_kept_batchnorm_is_lowered_to_a_depthwise_conv(name: str, target: str) -> None:
    model = BUILT[name]()
    result = _fold(model, target)
    (fold,) = result.report.folds
    assert (fold.pattern, fold.into) == ("lower-standalone", "Conv (1×1 depthwise)")
    (dwconv,) = [node for node in result.model.graph.node if node.op_type == "Conv"][-1:]
    attributes = {a.name: helper.get_attribute_value(a) for a in dwconv.attribute}
    channels = onnx.numpy_helper.to_array(
        next(i for i in model.graph.initializer if i.name == "bn_gamma")
    ).size
    assert attributes == {"group": channels, "kernel_shape": [1, 1]}


@pytest.mark.parametrize("name", ["negative_scale_after_relu", "bn_on_input"])
def test_default_keeps_what_nothing_folds_into(name: str) -> None:
    report = _fold(BUILT[name](), "default").report
    assert not report.folds and len(report.skipped) == 1


def _dense_input_bn() -> onnx.ModelProto:
    """x (N, 5) → BN → Relu: rank 2, where a Conv cannot express the BN."""
    rng = np.random.default_rng(5)
    params = {
        "g": rng.uniform(0.5, 2.0, 5),
        "b": rng.standard_normal(5),
        "m": rng.standard_normal(5),
        "v": rng.uniform(0.5, 2.0, 5),
    }
    nodes = [
        helper.make_node("BatchNormalization", ["x", *params], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["y"], name="relu"),
    ]
    arrays = [value.astype(np.float32) for value in params.values()]
    return make_model(
        nodes, [tensor("x", ["N", 5])], [tensor("y", ["N", 5])], arrays, names=list(params)
    )


@pytest.mark.parametrize("target", LOWERING)
def test_rank_two_batchnorm_is_lowered_to_mul_add(target: str) -> None:
    model = _dense_input_bn()
    result = _fold(model, target)
    (fold,) = result.report.folds
    assert fold.into == "Mul+Add"
    assert op_types(result.model) == ["Mul", "Add", "Relu"]
    assert_equivalent(model, result.model)


def test_a_form_named_by_hand_wins_over_the_profile() -> None:
    result = bnfold.optimize(BUILT["bn_on_input"](), target="npu", lower_standalone="mul-add")
    assert op_types(result.model) == ["Mul", "Add", "Relu"]


def test_lower_standalone_alone_means_the_profiles_form() -> None:
    result = bnfold.optimize(BUILT["bn_on_input"](), target="npu", lower_standalone=True)
    assert op_types(result.model) == ["Conv", "Relu"]
    default = bnfold.optimize(BUILT["bn_on_input"](), lower_standalone=True)
    assert op_types(default.model) == ["Mul", "Add", "Relu"]


@pytest.mark.parametrize("target", LOWERING)
def test_unlowerable_batchnorm_is_refused_with_its_reason(target: str) -> None:
    """The refusal quantize and npu add: a BN whose input rank is unknown stays."""
    result = _fold(bn_of_unknown_rank(), target)
    (skip,) = result.report.skipped
    assert skip.reason == "not-lowerable"
    assert f"--target {target}" in skip.detail and "rank of its input is unknown" in skip.detail
    assert "no-linear-producer" in skip.detail  # why nothing folds it, kept
    assert batchnorm_count(result.model) == 1


def test_default_reports_the_unlowerable_batchnorm_as_before() -> None:
    (skip,) = _fold(bn_of_unknown_rank(), "default").report.skipped
    assert skip.reason == "no-linear-producer"


@pytest.mark.parametrize("target", TARGET_NAMES)
@pytest.mark.parametrize("name", sorted(BUILT))
def test_same_input_same_bytes_and_a_second_fold_is_a_no_op(name: str, target: str) -> None:
    model = BUILT[name]()
    first = _fold(model, target).model.SerializeToString()
    assert _fold(model, target).model.SerializeToString() == first
    again = _fold(onnx.load_from_string(first), target)
    assert not again.report.folds
    assert again.model.SerializeToString() == first


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_report_names_its_target(target: str) -> None:
    report = _fold(conv_relu_bn_stack(), target).report
    assert report.target == target and report.to_dict()["target"] == target


def test_markdown_heading_names_a_profile_other_than_default() -> None:
    heading = _fold(conv_relu_bn_stack(), "npu").report.to_markdown().splitlines()[0]
    assert heading == "### bnfold optimize: `<in-memory model>` (--target npu)"
    default = _fold(conv_relu_bn_stack(), "default").report.to_markdown().splitlines()[0]
    assert default == "### bnfold optimize: `<in-memory model>`"


def test_an_unknown_profile_is_named_in_the_engine_too() -> None:
    with pytest.raises(
        ValueError, match="unknown target 'tpu': choose from default, quantize, npu"
    ):
        profile("tpu")


def test_profiles_name_the_forms_lowering_writes() -> None:
    assert {form for p in TARGET_NAMES for form in profile(p).lower_kept} <= set(LOWERING_FORMS)
    assert (DWCONV, MUL_ADD) == (lowering.DWCONV, lowering.MUL_ADD)


def test_unknown_target_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown target .tpu."):
        bnfold.optimize(conv_relu_bn_stack(), target="tpu")
