"""BatchNormalization folded into QDQ (quantized) Convs, exactly in the dequantized domain.

Every numerical check runs the unfolded model under onnxruntime with optimizations off; the
Q/DQ structure (the activations' Q/DQ nodes, their scales and zero points) must be unchanged,
and onnxruntime must form a ``QLinearConv`` for each folded layer at ``ORT_ENABLE_ALL``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import bnfold
from tests.builders.graphs import op_types, random_feeds, run_unoptimized
from tests.builders.qdq import (
    QdqSpec,
    count_fused,
    qdq_conv_model,
    qdq_conv_transpose_model,
    qdq_dense_model,
    qdq_standalone_bn_model,
)


def _activation_qparams(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The scales and zero points every QuantizeLinear reads (the activations')."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            for name in node.input[1:]:
                found[name] = values[name]
    return found


def _fold(spec: QdqSpec) -> tuple[onnx.ModelProto, bnfold.OptimizeResult]:
    model = qdq_conv_model(spec)
    result = bnfold.optimize(model)
    onnx.checker.check_model(result.model, full_check=True)
    return model, result


def _max_error(original: onnx.ModelProto, folded: onnx.ModelProto) -> tuple[float, float]:
    worst, peak = 0.0, 0.0
    for seed in (0, 1):
        feeds = random_feeds(original, seed)
        expected = run_unoptimized(original, feeds)["y"].astype(np.float64)
        got = run_unoptimized(folded, feeds)["y"].astype(np.float64)
        worst = max(worst, float(np.max(np.abs(got - expected))))
        peak = max(peak, float(np.max(np.abs(expected))))
    return worst, peak


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("bias", ["int32", "float", None])
@pytest.mark.parametrize("negative_gamma", [False, True])
def test_a_bn_after_a_qdq_conv_folds_into_its_scale(
    per_channel: bool, bias: str | None, negative_gamma: bool
) -> None:
    spec = QdqSpec(per_channel=per_channel, bias=bias, negative_gamma=negative_gamma)
    model, result = _fold(spec)
    folded = result.model
    assert "BatchNormalization" not in op_types(folded)
    (fold,) = result.report.folds
    assert fold.pattern == "qdq-conv-bn" and fold.dtype == "int8"
    assert op_types(folded).count("QuantizeLinear") == op_types(model).count("QuantizeLinear")
    added = 1 if bias is None else 0  # the new int32 bias's DequantizeLinear
    assert (
        op_types(folded).count("DequantizeLinear")
        == op_types(model).count("DequantizeLinear") + added
    )
    before, after = _activation_qparams(model), _activation_qparams(folded)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[name], after[name]) for name in before)
    error, peak = _max_error(model, folded)
    if bias == "float":
        assert fold.quantization_steps is None
        assert error <= 1e-5 * peak, error  # only the float32 scale rounding
    else:
        # int32 bias, re-quantized at x_scale·scale': at most half a step of the bias
        assert fold.quantization_steps is not None and fold.quantization_steps <= 0.5
        assert error <= 1e-3 * peak, error
    dq_types = {
        numpy_helper.to_array(t).dtype.name
        for t in folded.graph.initializer
        if t.name.endswith("bias_q_bnfold")
    }
    assert dq_types <= {"int32"}
    if bias is None:  # a new int32 bias at x_scale·scale' (the input is dequantized)
        assert dq_types == {"int32"}


def test_a_negative_scale_on_weights_holding_the_minimum_is_refused() -> None:
    spec = QdqSpec(negative_gamma=True, weight_min=True)
    model, result = _fold(spec)
    assert op_types(result.model) == op_types(model)
    (kept,) = result.report.skipped
    assert kept.reason == "quantized-negative-scale"
    assert "-128" in kept.detail and "l0_w_dq" in kept.detail


def test_a_positive_scale_needs_no_symmetric_weights() -> None:
    _, result = _fold(QdqSpec(weight_min=True))
    assert [f.pattern for f in result.report.folds] == ["qdq-conv-bn"]


def test_a_weight_dequantized_through_an_identity_stays_refused() -> None:
    model = qdq_conv_model(QdqSpec())
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    conv.input[1] = "w_same"
    model.graph.node.insert(
        list(model.graph.node).index(conv), onnx.helper.make_node("Identity", ["l0_wd"], ["w_same"])
    )
    result = bnfold.optimize(model)
    (kept,) = result.report.skipped
    assert kept.reason == "quantized-weight" and "DequantizeLinear l0_w_dq" in kept.detail


def test_four_qdq_layers_form_four_qlinearconv_and_keep_their_outputs() -> None:
    spec = QdqSpec(layers=4, channels=8, size=8, final_q=True)
    model, result = _fold(spec)
    assert [f.pattern for f in result.report.folds] == ["qdq-conv-bn"] * 4
    assert all(
        f.quantization_steps is not None and f.quantization_steps < 0.5 for f in result.report.folds
    )
    assert count_fused(model) == 0
    assert count_fused(result.model) == 4
    error, _ = _max_error(model, result.model)
    assert error <= 0.04 + 1e-6  # dequantized outputs: at most one step of the output's scale


def test_the_report_json_carries_the_bias_rounding_only_for_quantized_folds() -> None:
    _, result = _fold(QdqSpec())
    (entry,) = result.report.to_dict()["folds"]
    assert 0 <= entry["quantization_steps"] <= 0.5


@pytest.mark.parametrize(
    ("op_type", "bias"),
    [("Gemm", "int32"), ("Gemm", "float"), ("Gemm", None), ("MatMul", None)],
)
@pytest.mark.parametrize("negative_gamma", [False, True])
@pytest.mark.parametrize("per_channel", [True, False])
def test_a_mul_add_bn_after_a_qdq_gemm_or_matmul_folds(
    op_type: str, bias: str | None, negative_gamma: bool, per_channel: bool
) -> None:
    model = qdq_dense_model(
        op_type, bias=bias, negative_gamma=negative_gamma, per_channel=per_channel
    )
    result = bnfold.optimize(model)
    folded = result.model
    onnx.checker.check_model(folded, full_check=True)
    (fold,) = result.report.folds
    assert fold.pattern == f"qdq-{op_type.lower()}-bn" and fold.kind == "Mul+Add"
    assert "Mul" not in op_types(folded)
    # Gemm keeps its bias input; MatMul gets one float Add in the Mul/Add's place
    assert op_types(folded).count("Add") == (1 if op_type == "MatMul" else 0)
    before, after = _activation_qparams(model), _activation_qparams(folded)
    assert all(np.array_equal(before[name], after[name]) for name in before)
    error, _ = _max_error(model, folded)
    assert error <= 0.04 + 1e-6  # dequantized outputs: at most one step of the output's scale
    if op_type == "Gemm":  # onnxruntime forms its quantized Gemm
        assert count_fused(folded, "QGemm") == 1


def test_a_quantized_standalone_bn_is_lowered_to_a_qdq_depthwise_conv() -> None:
    model = qdq_standalone_bn_model()
    assert [s.reason for s in bnfold.optimize(model).report.skipped] == ["no-linear-producer"]
    result = bnfold.optimize(model, lower_standalone=True)
    folded = result.model
    onnx.checker.check_model(folded, full_check=True)
    (fold,) = result.report.folds
    assert fold.pattern == "lower-standalone" and fold.into == "QDQ Conv (1×1 depthwise)"
    # weights at ±127 (scale |s|/127): the bias rounds by under 1 % of an output step
    assert fold.quantization_steps is not None and fold.quantization_steps < 0.01
    conv = next(node for node in folded.graph.node if node.op_type == "Conv")
    assert {a.name: a.i for a in conv.attribute}["group"] == 8
    before, after = _activation_qparams(model), _activation_qparams(folded)
    assert all(np.array_equal(before[name], after[name]) for name in before)
    error, _ = _max_error(model, folded)
    assert error <= 0.08 + 1e-6  # dequantized outputs: at most one step of the output's scale
    assert count_fused(model) == 0 and count_fused(folded) == 1


def test_a_weight_dequantizelinear_another_conv_reads_stays_for_it() -> None:
    model = qdq_conv_model(QdqSpec())
    model.graph.node.append(
        onnx.helper.make_node("Conv", ["l0_xd", "l0_wd"], ["y2"], name="other", pads=[1, 1, 1, 1])
    )
    model.graph.output.append(
        onnx.helper.make_tensor_value_info("y2", onnx.TensorProto.FLOAT, None)
    )
    result = bnfold.optimize(model)
    assert [f.pattern for f in result.report.folds] == ["qdq-conv-bn"]
    other = next(node for node in result.model.graph.node if node.name == "other")
    assert other.input[1] == "l0_wd"  # the original DequantizeLinear, scale unchanged
    feeds = random_feeds(model)
    assert np.array_equal(
        run_unoptimized(model, feeds)["y2"], run_unoptimized(result.model, feeds)["y2"]
    )


def test_a_weight_quantized_along_its_input_channels_is_refused() -> None:
    model = qdq_conv_model(QdqSpec(per_channel=False))
    dq = next(node for node in model.graph.node if node.name == "l0_w_dq")
    scale = next(t for t in model.graph.initializer if t.name == "l0_w_scale")
    zero = next(t for t in model.graph.initializer if t.name == "l0_w_zp")
    value = float(numpy_helper.to_array(scale))
    scale.CopyFrom(numpy_helper.from_array(np.full(8, value, np.float32), "l0_w_scale"))
    zero.CopyFrom(numpy_helper.from_array(np.zeros(8, np.int8), "l0_w_zp"))
    dq.attribute[0].i = 1  # per input channel
    result = bnfold.optimize(model)
    (kept,) = result.report.skipped
    assert kept.reason == "quantized-weight" and "axis 1" in kept.detail


def test_a_bn_before_a_quantized_layer_is_refused() -> None:
    # x -> BN -> Conv(DQ W): scaling W's input channels would change its integers
    model = qdq_conv_model(QdqSpec(batchnorm=False, relu=False))
    nodes = list(model.graph.node)
    quantize = nodes[0]
    rng = np.random.default_rng(5)
    params = [
        rng.uniform(0.5, 2, 8),
        rng.standard_normal(8),
        rng.standard_normal(8),
        rng.uniform(0.5, 2, 8),
    ]
    names = ["g", "b", "m", "v"]
    model.graph.initializer.extend(
        numpy_helper.from_array(p.astype(np.float32), n) for p, n in zip(params, names, strict=True)
    )
    model.graph.node.insert(
        0, onnx.helper.make_node("BatchNormalization", ["x", *names], ["x_bn"], name="bn")
    )
    quantize.input[0] = "x"  # its DequantizeLinear is left unread
    # no Q between BN and Conv: the Conv reads the BN's output directly
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    conv.input[0] = "x_bn"
    result = bnfold.optimize(model)
    reasons = {s.reason for s in result.report.skipped}
    assert reasons == {"quantized-weight"}, result.report.skipped


def _run_all(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Output ``y`` from onnxruntime's CPU provider at ``ORT_ENABLE_ALL``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(["y"], feeds)[0]


@pytest.mark.parametrize(
    ("group", "per_channel", "bias", "shared_gamma"),
    [
        (1, True, True, False),
        (1, True, False, False),
        (1, False, True, False),
        (2, True, True, True),
    ],
)
def test_a_bn_after_a_qdq_conv_transpose_folds_into_its_axis_1_scale(
    group: int, per_channel: bool, bias: bool, shared_gamma: bool
) -> None:
    model = qdq_conv_transpose_model(
        group=group, per_channel=per_channel, bias=bias, shared_gamma=shared_gamma
    )
    result = bnfold.optimize(model)
    folded = result.model
    onnx.checker.check_model(folded, full_check=True)
    (fold,) = result.report.folds
    assert fold.pattern == "qdq-convtranspose-bn" and fold.dtype == "int8"
    assert fold.quantization_steps is not None and fold.quantization_steps < 0.5
    assert "BatchNormalization" not in op_types(folded)
    weight_dq = next(n for n in folded.graph.node if n.output[0].startswith("wd"))
    assert {a.name: a.i for a in weight_dq.attribute}.get("axis") == 1  # per output channel
    before, after = _activation_qparams(model), _activation_qparams(folded)
    assert all(np.array_equal(before[name], after[name]) for name in before)
    for seed in (0, 1):  # loads and runs at both levels; at most one output step moves
        feeds = random_feeds(model, seed)
        expected = run_unoptimized(model, feeds)["y"]
        assert np.max(np.abs(run_unoptimized(folded, feeds)["y"] - expected)) <= 0.04 + 1e-6
        assert np.max(np.abs(_run_all(folded, feeds) - _run_all(model, feeds))) <= 0.04 + 1e-6


def test_a_grouped_conv_transpose_whose_bn_differs_between_groups_is_refused() -> None:
    model = qdq_conv_transpose_model(group=2)
    result = bnfold.optimize(model)
    assert op_types(result.model) == op_types(model)
    (kept,) = result.report.skipped
    assert kept.reason == "quantized-weight" and "group=2" in kept.detail


def test_a_conv_transpose_weight_quantized_along_its_input_channels_is_refused() -> None:
    model = qdq_conv_transpose_model(per_channel=False, bias=False)
    dq = next(node for node in model.graph.node if node.name == "w_dq")
    scale = next(t for t in model.graph.initializer if t.name == "w_scale")
    zero = next(t for t in model.graph.initializer if t.name == "w_zp")
    value = float(numpy_helper.to_array(scale))
    scale.CopyFrom(numpy_helper.from_array(np.full(8, value, np.float32), "w_scale"))
    zero.CopyFrom(numpy_helper.from_array(np.zeros(8, np.int8), "w_zp"))
    dq.attribute.append(onnx.helper.make_attribute("axis", 0))  # per input channel
    result = bnfold.optimize(model)
    (kept,) = result.report.skipped
    assert kept.reason == "quantized-weight" and "axis 0" in kept.detail


def test_a_negative_bn_scale_into_a_qdq_conv_transpose_negates_its_axis_1_slices() -> None:
    model = qdq_conv_transpose_model()
    gamma = next(t for t in model.graph.initializer if t.name == "gamma")
    values = numpy_helper.to_array(gamma).copy()
    values[::2] *= -1
    gamma.CopyFrom(numpy_helper.from_array(values, "gamma"))
    result = bnfold.optimize(model)
    assert [f.pattern for f in result.report.folds] == ["qdq-convtranspose-bn"]
    feeds = random_feeds(model)
    error = np.max(
        np.abs(run_unoptimized(model, feeds)["y"] - run_unoptimized(result.model, feeds)["y"])
    )
    assert error <= 0.04 + 1e-6
